//! What the maps the agent writes hold ([`Mirror`]): the compiler's
//! tables with endpoint entries by host interface (what `ENDPOINTS` holds,
//! [`DpState`]; one write: [`DpOp`]; both the compiler's generic types),
//! and the `SOURCES_V4/V6` entries, which are the agent's own
//! (`agent::sources` derives them; one write: [`SourceOp`]).

use std::collections::BTreeSet;

use ipnet::IpNet;
use palisade_common::{EndpointInfo, PORT_BITMAP_WORDS, PortBitmap};
use palisade_compiler::{PortSet, Tables, Write};

/// The compiled maps' contents, endpoint entries by host interface.
pub type DpState = Tables<u32, EndpointInfo>;

/// One write to a compiled map, endpoint entries by host interface.
pub type DpOp = Write<u32, EndpointInfo>;

/// One write to `SOURCES_V4/V6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceOp {
    /// `SOURCES_V4/V6[ifindex, prefix] = SOURCE_ALLOWED`: the pod on
    /// `ifindex` may send from `prefix`.
    Upsert {
        /// Host-side interface.
        ifindex: u32,
        /// An own address (/32, /128) or a namespace's allowed prefix.
        prefix: IpNet,
    },
    /// Delete `SOURCES_V4/V6[ifindex, prefix]`.
    Remove {
        /// Host-side interface.
        ifindex: u32,
        /// Prefix.
        prefix: IpNet,
    },
}

/// The contents of every map the agent writes, as last written or read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirror {
    /// The compiled maps.
    pub tables: DpState,
    /// `SOURCES_V4` and `SOURCES_V6`: (interface, prefix).
    pub sources: BTreeSet<(u32, IpNet)>,
}

impl Mirror {
    /// Applies one write to `SOURCES_V4/V6`.
    pub fn apply_source(&mut self, op: &SourceOp) {
        match op {
            SourceOp::Upsert { ifindex, prefix } => {
                self.sources.insert((*ifindex, prefix.trunc()));
            }
            SourceOp::Remove { ifindex, prefix } => {
                self.sources.remove(&(*ifindex, prefix.trunc()));
            }
        }
    }
}

/// The set of ports of a bitmap.
pub fn bitmap_ports(b: &PortBitmap) -> PortSet {
    let mut ranges = Vec::new();
    let mut start: Option<u32> = None;
    for w in 0..PORT_BITMAP_WORDS {
        let word = b.words[w];
        for bit in 0..64u32 {
            let p = w as u32 * 64 + bit;
            let set = word & (1u64 << bit) != 0;
            match (set, start) {
                (true, None) => start = Some(p),
                (false, Some(s)) => {
                    ranges.push((s as u16, (p - 1) as u16));
                    start = None;
                }
                _ => {}
            }
        }
    }
    if let Some(s) = start {
        ranges.push((s as u16, u16::MAX));
    }
    PortSet::from_ranges(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_round_trip() {
        for set in [
            PortSet::new(),
            PortSet::all(),
            PortSet::from_ranges([(0, 0), (80, 80), (443, 445), (65535, 65535)]),
            PortSet::from_ranges([(63, 64), (127, 129)]),
        ] {
            assert_eq!(bitmap_ports(&set.to_bitmap()), set);
        }
    }
}
