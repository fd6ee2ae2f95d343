//! Datapath log records of the rare paths (`palisade agent --datapath-log`):
//! headers that do not parse, a later fragment without its first
//! fragment's state, a packet on an interface with no endpoint entry, a
//! new flow of a pod whose policy is pending. Each record names the
//! reason, what happened to the packet, the direction, the interface
//! (ifindex), and the packet's protocol, addresses and ports when it was
//! parsed; the agent writes it to its log (`aya-log`'s ring, `AYA_LOGS`).
//!
//! The switch is `aya-log`'s level (`AYA_LOG_LEVEL`), which the agent sets
//! when it loads the object: a read-only global, so the verifier knows
//! its value and, with logging off, removes everything behind the check.
//! Only the rare paths call [`note`]; the fast path and the policy path
//! never look at the switch. Records go through one global BPF function,
//! [`palisade_rare_log`], which the verifier checks once on its own, not
//! once per path that reaches a rare branch.
//!
//! A flood (a pod sending malformed packets at line rate) cannot flood the
//! log: a per-CPU token bucket (`LOG_RATE`) lets
//! [`defaults::DATAPATH_LOG_PER_SEC`] records a second through, and a
//! record is not written when the ring may not have room for it. Both are
//! counted in `LOG_STATS` (`EventStats`), which the agent reports.

use aya_ebpf::{
    bindings::BPF_RB_AVAIL_DATA, helpers::generated::bpf_ktime_get_coarse_ns, maps::RingBuf,
};
use aya_log_ebpf::macro_support::{AYA_LOGS, Level, level_enabled};
use palisade_common::{DropReason, addr_to_bytes, defaults, family};

use crate::{LOG_RATE, LOG_STATS, PACKET_SCRATCH, events, packet::Packet};

/// `aya-log`'s ring size (`AYA_LOGS`, 128 KiB in this version).
const LOG_RING_BYTES: u64 = 1 << 17;
/// Room a record needs: `aya-log` reserves the next power of two above the
/// record's size, and ours (target, module, file, the message's pieces and
/// arguments) stay below 512 bytes.
const RECORD_ROOM: u64 = 512;

/// Length of every [`SAID`] entry: `drop into pod: ` and the longest
/// reason name (`ipv6-extension-header-limit`).
const SAID_LEN: usize = 15 + 27;

/// `words` then `name`, padded with spaces to [`SAID_LEN`].
const fn said(words: &str, name: &str) -> [u8; SAID_LEN] {
    let mut out = [b' '; SAID_LEN];
    let (w, n) = (words.as_bytes(), name.as_bytes());
    let mut i = 0;
    while i < w.len() {
        out[i] = w[i];
        i += 1;
    }
    let mut j = 0;
    while j < n.len() && i + j < SAID_LEN {
        out[i + j] = n[j];
        j += 1;
    }
    out
}

/// What happened, by `reason << 2 | dropped << 1 | egress`: the verdict,
/// the direction (`direction`'s values) and the reason's name
/// (`DropReason::as_str`).
const SAID: [[u8; SAID_LEN]; 64] = {
    let words = [
        "pass into pod: ",
        "pass from pod: ",
        "drop into pod: ",
        "drop from pod: ",
    ];
    let mut out = [[b' '; SAID_LEN]; 64];
    let mut v = 0;
    while v < 16 {
        let name = match DropReason::from_u8(v as u8) {
            Some(r) => r.as_str(),
            None => "unknown",
        };
        let mut k = 0;
        while k < 4 {
            out[v << 2 | k] = said(words[k], name);
            k += 1;
        }
        v += 1;
    }
    out
};

/// The packet has been parsed: its addresses are in the packet scratch slot.
const HAS_PACKET: u32 = 1 << 24;
/// The packet is dropped (else it passes).
const DROPPED: u32 = 1 << 16;

/// Writes a record about this packet if datapath logging is on for
/// `reason`'s level. `pkt` is the packet the pipeline parsed (the one in
/// the packet scratch slot, see `barrier`), `None` before parsing.
#[inline(always)]
pub fn note(reason: DropReason, dropped: bool, dir: u8, ifindex: u32, pkt: Option<&Packet>) {
    let mut what = reason as u32 | (dir as u32) << 8;
    if dropped {
        what |= DROPPED;
    }
    if pkt.is_some() {
        what |= HAS_PACKET;
    }
    palisade_rare_log(what, ifindex);
}

/// The level a reason's records are written at: the agent's state
/// (unknown endpoint, pending policy) at info, a packet's own trouble at
/// debug.
#[inline(always)]
fn level_of(reason: u8) -> Level {
    if reason == DropReason::UnknownEndpoint as u8 || reason == DropReason::PolicyPending as u8 {
        Level::Info
    } else {
        Level::Debug
    }
}

/// The record of [`note`]: `what` is `reason | dir << 8 | dropped << 16 |
/// has_packet << 24`. Returns 1 if a record was written, else 0.
///
/// A global function (see the module's doc). Its arguments are plain
/// numbers: the packet, if any, is read from the scratch slot the pipeline
/// parsed it into.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn palisade_rare_log(what: u32, ifindex: u32) -> u32 {
    let reason = what as u8;
    let level = level_of(reason);
    if !level_enabled(level) {
        return 0;
    }
    let Some(stats) = LOG_STATS.get_ptr_mut(0) else {
        return 0;
    };
    let stats = unsafe { &mut *stats };
    let Some(rate) = LOG_RATE.get_ptr_mut(0) else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if !events::take_token(
        unsafe { &mut *rate },
        defaults::DATAPATH_LOG_PER_SEC,
        defaults::DATAPATH_LOG_BURST,
        now,
    ) {
        stats.rate_limited += 1;
        return 0;
    }
    if !has_room(&AYA_LOGS) {
        stats.ring_full += 1;
        return 0;
    }
    stats.emitted += 1;
    // Every string of a record has a length the compiler knows: one of
    // varying length is copied byte by byte, which the verifier walks
    // once per byte and path (a million instructions were not enough). So
    // what happened is one string of a fixed length, padded with spaces
    // (the agent trims the line), and ends the record. One string, not
    // three: the record's fields are on the stack, which the function
    // shares with its callers' (512 bytes in all).
    let said =
        (reason as usize & 15) << 2 | ((what >> 15) as usize & 2) | ((what >> 8) as usize & 1);
    let said = unsafe { core::str::from_utf8_unchecked(&SAID[said & 63]) };
    let pkt = if what & HAS_PACKET != 0 {
        PACKET_SCRATCH.get(0).map(|p| &p.pkt)
    } else {
        None
    };
    match pkt {
        Some(p) if p.family == family::V4 => {
            let src = p.saddr[0].to_ne_bytes();
            let dst = p.daddr[0].to_ne_bytes();
            aya_log_ebpf::log!(
                (),
                target: "palisade::datapath",
                level,
                "ifindex {} proto {} {:i}:{} -> {:i}:{}: {}",
                ifindex, p.proto, src, p.sport, dst, p.dport, said
            );
        }
        Some(p) => {
            // In memory, not registers: the compiler would otherwise hold
            // every byte in its own register, spilled to the stack (too
            // deep, see above).
            let src = core::hint::black_box(addr_to_bytes(p.saddr));
            let dst = core::hint::black_box(addr_to_bytes(p.daddr));
            aya_log_ebpf::log!(
                (),
                target: "palisade::datapath",
                level,
                "ifindex {} proto {} [{:i}]:{} -> [{:i}]:{}: {}",
                ifindex, p.proto, src, p.sport, dst, p.dport, said
            );
        }
        None => {
            aya_log_ebpf::log!(
                (),
                target: "palisade::datapath",
                level,
                "ifindex {}: {}",
                ifindex, said
            );
        }
    }
    1
}

/// Whether the ring has room for one more record (approximate: another
/// CPU may take it first, and then the record is lost uncounted).
#[inline(always)]
fn has_room(ring: &RingBuf) -> bool {
    ring.query(BPF_RB_AVAIL_DATA as u64) + RECORD_ROOM <= LOG_RING_BYTES
}
