//! Address → identity: this CPU's cache of recent answers (valid for the
//! current ipcache generation), else the exact maps (pods and node
//! addresses, one hash lookup), then the CIDR-region LPM trie, else `WORLD`.
//!
//! The trie walk deepens with the number of prefixes (from ~400 ns to
//! ~530 ns for a denied SYN at 50 000 prefixes); the cache makes a peer
//! this CPU has resolved since the last ipcache change cost the same
//! whatever the tables hold. A peer not in the cache still walks the trie,
//! whose cost with cold caches grows with the prefix count (BENCHMARKS.md,
//! "denied, distinct CIDR peers"). Contract and layout: `IpcacheCacheEntry`.

use aya_ebpf::maps::lpm_trie::Key;
use palisade_common::{
    Addr, Config, IDENTITY_WORLD, IpcacheCacheEntry, IpcacheValue, capacity, family,
};

use crate::{IPCACHE_CACHE, IPCACHE_EXACT4, IPCACHE_EXACT6, IPCACHE_V4, IPCACHE_V6};

const WORLD: IpcacheValue = IpcacheValue {
    identity: IDENTITY_WORLD,
    cidr_identity: IDENTITY_WORLD,
};

/// The identities of `addr` (IPv4 in its first word when `v4`). `None`
/// only if this CPU's cache slot is missing, which cannot happen (an index
/// below the array's size); callers fail closed.
///
/// A BPF subprogram, not inlined: the verifier checks its paths (cached,
/// exact map, trie, `WORLD`) where it is called and goes on in the caller
/// from one state, so they do not multiply the states of the rest of the
/// pipeline. Inlined, the cache took `palisade_to_pod` from 0.65 to over
/// 0.8 million processed instructions; as a subprogram both programs took
/// 0.52 million (`tests/tests/verifier_budget.rs`). The call costs a few
/// nanoseconds on the new-flow path only.
#[inline(never)]
pub fn lookup(v4: bool, addr: &Addr, cfg: &Config) -> Option<IpcacheValue> {
    // Read before resolving (see `IpcacheCacheEntry`): an answer is never
    // stamped with a generation newer than the maps it came from.
    let generation = unsafe { core::ptr::read_volatile(&cfg.ipcache_generation) };
    let fam = if v4 { family::V4 } else { family::V6 };
    let slot = IPCACHE_CACHE.get_ptr_mut(slot_index(addr))?;
    let s = unsafe { &mut *slot };
    let differs = (s.generation ^ generation)
        | (s.family ^ fam) as u32
        | (s.addr[0] ^ addr[0])
        | (s.addr[1] ^ addr[1])
        | (s.addr[2] ^ addr[2])
        | (s.addr[3] ^ addr[3]);
    if core::hint::black_box(differs) != 0 {
        *s = IpcacheCacheEntry {
            addr: *addr,
            generation,
            family: fam,
            _pad: [0; 3],
            value: resolve(v4, addr),
        };
    }
    // Both ways read the answer back from the slot: one unknown value for
    // the verifier, whichever way it was found.
    let slot = core::hint::black_box(slot);
    Some(unsafe { (*slot).value })
}

/// The cache slot of an address (IPv4 addresses have three zero words).
#[inline(always)]
fn slot_index(a: &Addr) -> u32 {
    let h = (a[0] ^ a[1].rotate_left(8) ^ a[2].rotate_left(16) ^ a[3].rotate_left(24))
        .wrapping_mul(0x9e37_79b1);
    h >> (32 - capacity::IPCACHE_CACHE_SLOTS.trailing_zeros())
}

/// The ipcache maps' answer for `addr`.
#[inline(always)]
fn resolve(v4: bool, addr: &Addr) -> IpcacheValue {
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
