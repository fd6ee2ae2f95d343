//! Address → identity: the exact maps first (pods and node addresses, one
//! hash lookup), then the CIDR-region LPM trie, else `WORLD`.

use aya_ebpf::maps::lpm_trie::Key;
use palisade_common::{Addr, IDENTITY_WORLD, IpcacheValue};

use crate::{IPCACHE_EXACT4, IPCACHE_EXACT6, IPCACHE_V4, IPCACHE_V6};

const WORLD: IpcacheValue = IpcacheValue {
    identity: IDENTITY_WORLD,
    cidr_identity: IDENTITY_WORLD,
};

/// The identities of `addr` (IPv4 in its first word when `v4`).
#[inline(always)]
pub fn lookup(v4: bool, addr: &Addr) -> IpcacheValue {
    if v4 {
        let a = addr[0].to_ne_bytes();
        if let Some(v) = unsafe { IPCACHE_EXACT4.get(&a) } {
            return *v;
        }
        match IPCACHE_V4.get(&Key::new(32, a)) {
            Some(v) => *v,
            None => WORLD,
        }
    } else {
        let a = addr_bytes(addr);
        if let Some(v) = unsafe { IPCACHE_EXACT6.get(&a) } {
            return *v;
        }
        match IPCACHE_V6.get(&Key::new(128, a)) {
            Some(v) => *v,
            None => WORLD,
        }
    }
}

/// The wire bytes of an IPv6 address held as words.
#[inline(always)]
fn addr_bytes(a: &Addr) -> [u8; 16] {
    // SAFETY: same size, every bit pattern valid.
    unsafe { core::mem::transmute::<Addr, [u8; 16]>(*a) }
}
