//! Address → identity: the exact maps first (pods and node addresses, one
//! hash lookup), then the CIDR-region LPM trie, else `WORLD`.

use aya_ebpf::maps::lpm_trie::Key;
use palisade_common::{IDENTITY_WORLD, IpcacheValue};

use crate::{IPCACHE_EXACT4, IPCACHE_EXACT6, IPCACHE_V4, IPCACHE_V6};

const WORLD: IpcacheValue = IpcacheValue {
    identity: IDENTITY_WORLD,
    cidr_identity: IDENTITY_WORLD,
};

/// The identities of `addr` (IPv4 in its first 4 bytes when `v4`).
#[inline(always)]
pub fn lookup(v4: bool, addr: &[u8; 16]) -> IpcacheValue {
    if v4 {
        let a = [addr[0], addr[1], addr[2], addr[3]];
        if let Some(v) = unsafe { IPCACHE_EXACT4.get(&a) } {
            return *v;
        }
        match IPCACHE_V4.get(&Key::new(32, a)) {
            Some(v) => *v,
            None => WORLD,
        }
    } else {
        if let Some(v) = unsafe { IPCACHE_EXACT6.get(addr) } {
            return *v;
        }
        match IPCACHE_V6.get(&Key::new(128, *addr)) {
            Some(v) => *v,
            None => WORLD,
        }
    }
}
