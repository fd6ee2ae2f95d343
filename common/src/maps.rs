//! Keys and values of every Palisade map, with their layouts explained.
//! Map names are in [`crate::map_names`]; capacities in [`capacity`].
//!
//! Addresses in connection-tracking, fragment and event records are an
//! [`Addr`]: the address's network-order bytes held in four `u32` words
//! (word alignment lets the datapath copy and hash them with word loads);
//! an IPv4 address occupies the first word and the rest are zero. Convert
//! with [`addr_from_bytes`] / [`addr_to_bytes`]. Ports and identities are
//! native-endian integers (the datapath converts ports from the wire).

use core::mem::{align_of, size_of};

/// An IPv4 or IPv6 address as its wire bytes in four native `u32` words.
pub type Addr = [u32; 4];

/// The [`Addr`] holding these 16 wire bytes (IPv4: 4 bytes then zeros).
pub const fn addr_from_bytes(b: [u8; 16]) -> Addr {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

/// The 16 wire bytes of an [`Addr`] (IPv4 in the first 4).
pub const fn addr_to_bytes(a: Addr) -> [u8; 16] {
    let (w0, w1, w2, w3) = (
        a[0].to_ne_bytes(),
        a[1].to_ne_bytes(),
        a[2].to_ne_bytes(),
        a[3].to_ne_bytes(),
    );
    [
        w0[0], w0[1], w0[2], w0[3], w1[0], w1[1], w1[2], w1[3], w2[0], w2[1], w2[2], w2[3], w3[0],
        w3[1], w3[2], w3[3],
    ]
}

/// Default capacities (`max_entries`). The agent may raise them at load time.
pub mod capacity {
    /// Local endpoints on one node.
    pub const ENDPOINTS: u32 = 4096;
    /// Policy entries across all local endpoints.
    pub const POLICY: u32 = 262_144;
    /// Distinct multi-range port sets.
    pub const PORTSETS: u32 = 4096;
    /// Distinct multi-segment ClusterNetworkPolicy code tables.
    pub const TIERSETS: u32 = 4096;
    /// Single addresses (pods cluster-wide, node addresses) per family.
    pub const IPCACHE_EXACT: u32 = 131_072;
    /// CIDR regions per family.
    pub const IPCACHE_LPM: u32 = 65_536;
    /// Tracked connections per family (one entry per connection per endpoint).
    pub const CT: u32 = 262_144;
    /// Tracked fragmented datagrams.
    pub const FRAGS: u32 = 8192;
    /// Per-endpoint drop counters.
    pub const EP_DROPS: u32 = 16_384;
    /// Ring buffer bytes for drop and audit events (a power of two pages).
    pub const EVENTS_BYTES: u32 = 1 << 20;
    /// Flow-cache slots per CPU for each (family, direction): see
    /// [`crate::FlowCacheEntry`]. A power of two.
    pub const FLOW_CACHE_SLOTS: u32 = 64;
    /// Source entries per family (each local pod's own addresses plus its
    /// namespace's allowed prefixes).
    pub const SOURCES: u32 = 16_384;
    /// Resolved-address slots per CPU (both families): see
    /// [`crate::IpcacheCacheEntry`]. A power of two.
    pub const IPCACHE_CACHE_SLOTS: u32 = 256;
}

/// `ENDPOINTS` value, keyed by the ifindex of the pod's host-side veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Agent-assigned endpoint id, stable for the pod's life; the first
    /// field of every [`PolicyKey`] of this pod.
    pub ep_id: u32,
    /// The pod's security identity (reported in events).
    pub identity: u32,
    /// [`endpoint_flags`] bits.
    pub flags: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

/// Bits of [`EndpointInfo::flags`].
pub mod endpoint_flags {
    /// Some enforced policy selects the pod for ingress.
    pub const ISOLATED_INGRESS: u32 = 1 << 0;
    /// Some enforced policy selects the pod for egress.
    pub const ISOLATED_EGRESS: u32 = 1 << 1;
    /// Ingress verdicts are audited: a would-drop is reported and passed.
    pub const AUDIT_INGRESS: u32 = 1 << 2;
    /// Egress verdicts are audited.
    pub const AUDIT_EGRESS: u32 = 1 << 3;
    /// Audited policies (enforced ∪ audited) would isolate the pod for
    /// ingress although the enforced ones do not; the audit view's entries
    /// (`PolicyKey::view == 1`) are then consulted for new allowed flows.
    pub const VIEW_ISOLATED_INGRESS: u32 = 1 << 4;
    /// Same as [`VIEW_ISOLATED_INGRESS`] for egress.
    pub const VIEW_ISOLATED_EGRESS: u32 = 1 << 5;
    /// The pod's policy is not known yet: new flows are dropped with
    /// `policy-pending` (only with `--default-deny-until-synced`).
    pub const POLICY_PENDING: u32 = 1 << 6;
    /// Some ClusterNetworkPolicy applies to the pod for ingress: the tier
    /// codes of its entries are consulted (see `PolicyValue`).
    pub const TIERED_INGRESS: u32 = 1 << 7;
    /// Same as [`TIERED_INGRESS`] for egress.
    pub const TIERED_EGRESS: u32 = 1 << 8;
    /// The audit view of ingress is a tier walk: some audited policy
    /// applies there (an audited ClusterNetworkPolicy, or an audited
    /// NetworkPolicy that isolates where the enforced ones do not) and some
    /// ClusterNetworkPolicy, enforced or audited, does too. The view's
    /// entries (`PolicyKey::view == 1`) then hold every policy's allows and
    /// codes, enforced and audited, and the view is isolated where
    /// [`ISOLATED_INGRESS`] or [`VIEW_ISOLATED_INGRESS`] says so. New flows
    /// that policy lets through are walked again in the view and the ones
    /// it would deny are reported.
    pub const VIEW_TIERED_INGRESS: u32 = 1 << 9;
    /// Same as [`VIEW_TIERED_INGRESS`] for egress.
    pub const VIEW_TIERED_EGRESS: u32 = 1 << 10;

    /// The isolation bit for a direction.
    pub const fn isolated(direction: u8) -> u32 {
        if direction == crate::direction::INGRESS {
            ISOLATED_INGRESS
        } else {
            ISOLATED_EGRESS
        }
    }
    /// The audit bit for a direction.
    pub const fn audit(direction: u8) -> u32 {
        if direction == crate::direction::INGRESS {
            AUDIT_INGRESS
        } else {
            AUDIT_EGRESS
        }
    }
    /// The tier bit for a direction.
    pub const fn tiered(direction: u8) -> u32 {
        if direction == crate::direction::INGRESS {
            TIERED_INGRESS
        } else {
            TIERED_EGRESS
        }
    }
    /// The audit-view isolation bit for a direction.
    pub const fn view_isolated(direction: u8) -> u32 {
        if direction == crate::direction::INGRESS {
            VIEW_ISOLATED_INGRESS
        } else {
            VIEW_ISOLATED_EGRESS
        }
    }
    /// The audit-view tier bit for a direction.
    pub const fn view_tiered(direction: u8) -> u32 {
        if direction == crate::direction::INGRESS {
            VIEW_TIERED_INGRESS
        } else {
            VIEW_TIERED_EGRESS
        }
    }
}

/// `POLICY` key: "may `identity` talk to endpoint `ep_id` in `direction`
/// with protocol class `proto`?". A hash map, so a lookup costs the same
/// whatever the number of policies, rules, identities or CIDRs.
///
/// The datapath looks up, in order and stopping at the first match whose
/// ports match: the peer's pod identity, the peer's CIDR identity (when it
/// differs), and [`crate::IDENTITY_ANY`]. So at most 3 lookups per new flow
/// (6 when the endpoint also has an audit view in that direction).
///
/// The compiler stores one entry per distinct key: the union of every rule's
/// ports for that key goes into one [`PolicyValue`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// [`EndpointInfo::ep_id`] of the local pod.
    pub ep_id: u32,
    /// Peer identity, or [`crate::IDENTITY_ANY`].
    pub identity: u32,
    /// [`crate::direction`].
    pub direction: u8,
    /// `6`, `17`, `132`, or [`crate::proto::OTHER`] for all other protocols.
    pub proto: u8,
    /// `0`: the enforced policies. `1`: the audit view (enforced ∪ audited).
    pub view: u8,
    /// Explicit padding; always zero.
    pub _pad: u8,
}

/// `POLICY` value: what the key's policies say of each destination port.
///
/// **NetworkPolicy allows.** If `portset` is zero the allowed ports are
/// the inclusive range `port_lo..=port_hi` (`0..=65535` is "all ports",
/// `lo > hi` is none); otherwise the ports are the set bits of
/// `PORTSETS[portset]`, used when the union of rules is not one contiguous
/// range. Ranges need not be aligned to powers of two. For
/// [`crate::proto::OTHER`] the port is 0, so entries use `0..=65535`.
///
/// **ClusterNetworkPolicy codes** ([`TierCodes`], read only for endpoints
/// with [`endpoint_flags::TIERED_INGRESS`] / `TIERED_EGRESS` in that
/// direction): if `tierset` is zero, ports `tier_lo..=tier_hi` have
/// `codes` and every other port [`TierCodes::NONE`]; otherwise the codes
/// of each port are in `TIERSETS[tierset]` ([`TierTable`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyValue {
    /// First allowed port (inclusive), host order.
    pub port_lo: u16,
    /// Last allowed port (inclusive), host order.
    pub port_hi: u16,
    /// Non-zero: id of a [`PortBitmap`] in `PORTSETS`.
    pub portset: u32,
    /// First port (inclusive) with `codes` when `tierset` is zero.
    pub tier_lo: u16,
    /// Last port (inclusive) with `codes` when `tierset` is zero.
    pub tier_hi: u16,
    /// Non-zero: id of a [`TierTable`] in `TIERSETS`.
    pub tierset: u32,
    /// The codes of ports `tier_lo..=tier_hi` (when `tierset` is zero).
    pub codes: TierCodes,
}

impl PolicyValue {
    /// Every port allowed by NetworkPolicy; no tier code.
    pub const ALL_PORTS: PolicyValue = PolicyValue::range(0, u16::MAX);

    /// One inclusive range allowed by NetworkPolicy; no tier code.
    pub const fn range(lo: u16, hi: u16) -> PolicyValue {
        PolicyValue {
            port_lo: lo,
            port_hi: hi,
            portset: 0,
            tier_lo: 1,
            tier_hi: 0,
            tierset: 0,
            codes: TierCodes::NONE,
        }
    }

    /// No port allowed by NetworkPolicy; no tier code.
    pub const NOTHING: PolicyValue = PolicyValue::range(1, 0);
}

/// The first matching ClusterNetworkPolicy rule of each tier for one
/// (endpoint, peer identity, direction, protocol class, port), as a
/// [`tier_code`] each. Of the entries the datapath consults for a flow
/// (the peer's identity, its CIDR identity, any peer), the largest code of
/// a tier is the tier's first matching rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TierCodes {
    /// The Admin tier's code.
    pub admin: u32,
    /// The Baseline tier's code.
    pub baseline: u32,
}

impl TierCodes {
    /// No rule of either tier matches.
    pub const NONE: TierCodes = TierCodes {
        admin: tier_code::NONE,
        baseline: tier_code::NONE,
    };
}

/// A tier code: `precedence << 2 | action`. The larger code wins: a rule
/// consulted earlier (lower priority value, then policy name, then rule
/// order: `rank`, starting at 1) has the larger precedence
/// `tier_code::TOP - rank`. Zero is "no rule matches".
pub mod tier_code {
    /// No rule matches.
    pub const NONE: u32 = 0;
    /// The action bits' value for Accept.
    pub const ACCEPT: u32 = 1;
    /// The action bits' value for Deny.
    pub const DENY: u32 = 2;
    /// The action bits' value for Pass.
    pub const PASS: u32 = 3;
    /// The precedence of rank 0, which no rule has: [`BOTTOM`] uses it.
    pub const TOP: u32 = (1 << 30) - 1;
    /// Deny ahead of every rule: what an entry holds while it changes in a
    /// way no intermediate value can express safely (see the compiler's
    /// `order.rs`).
    pub const BOTTOM: u32 = TOP << 2 | DENY;

    /// The code of the rule of rank `rank` (1 is consulted first) with
    /// action `action`.
    pub const fn of(rank: u32, action: u32) -> u32 {
        (TOP - rank) << 2 | action
    }

    /// The action bits of a code ([`ACCEPT`], [`DENY`], [`PASS`], or 0).
    pub const fn action(code: u32) -> u32 {
        code & 3
    }

    /// The rank of a code (0 for [`NONE`] and [`BOTTOM`]).
    pub const fn rank(code: u32) -> u32 {
        if code == NONE { 0 } else { TOP - (code >> 2) }
    }
}

/// Segments in a [`TierTable`].
pub const TIER_SEGMENTS: usize = 256;

/// `TIERSETS` value: the codes of every port as at most [`TIER_SEGMENTS`]
/// segments. Segment `i` covers ports `starts[i]..starts[i + 1]` (the last
/// one up to 65535); `starts[0]` is 0 and `starts` never decreases. Unused
/// segments at the end repeat the last one's codes with start 65535, so a
/// fixed binary search of `log2(TIER_SEGMENTS)` steps finds every port's
/// segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierTable {
    /// First port of each segment.
    pub starts: [u16; TIER_SEGMENTS],
    /// Codes of each segment.
    pub codes: [TierCodes; TIER_SEGMENTS],
}

impl TierTable {
    /// The codes of `port` (the datapath's search, written the same way).
    pub const fn lookup(&self, port: u16) -> TierCodes {
        let mut lo = 0usize;
        let mut step = TIER_SEGMENTS / 2;
        while step > 0 {
            if self.starts[lo + step] <= port {
                lo += step;
            }
            step /= 2;
        }
        self.codes[lo]
    }
}

/// Number of `u64` words in a [`PortBitmap`].
pub const PORT_BITMAP_WORDS: usize = 65_536 / 64;

/// `PORTSETS` value: bit `p` (word `p / 64`, bit `p % 64`) is set iff port
/// `p` is allowed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortBitmap {
    /// The bits.
    pub words: [u64; PORT_BITMAP_WORDS],
}

impl PortBitmap {
    /// No port.
    pub const EMPTY: PortBitmap = PortBitmap {
        words: [0; PORT_BITMAP_WORDS],
    };

    /// Whether `port` is in the set.
    pub const fn contains(&self, port: u16) -> bool {
        self.words[(port / 64) as usize] & (1u64 << (port % 64)) != 0
    }

    /// Adds the inclusive range `lo..=hi`.
    pub fn insert_range(&mut self, lo: u16, hi: u16) {
        let mut p = lo as u32;
        while p <= hi as u32 {
            self.words[(p / 64) as usize] |= 1u64 << (p % 64);
            p += 1;
        }
    }
}

/// Value of the ipcache maps (`IPCACHE_EXACT4/6` and the LPM tries
/// `IPCACHE_V4/6`).
///
/// The exact maps hold every single address Palisade knows (pod IPs across
/// the cluster, this node's addresses): `identity` is the pod identity (or
/// [`crate::IDENTITY_HOST`]) and `cidr_identity` is the identity of the most
/// specific policy prefix containing the address, or
/// [`crate::IDENTITY_WORLD`]. The LPM tries hold the CIDR regions
/// ([`crate::identity`]); there both fields are the region identity. An
/// address in neither is `WORLD`.
///
/// The LPM keys are aya's `Key<[u8; 4]>` / `Key<[u8; 16]>` (prefix length
/// then network-order address bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpcacheValue {
    /// Pod, host or region identity.
    pub identity: u32,
    /// Region identity of the address (equal to `identity` for regions).
    pub cidr_identity: u32,
}

/// `SOURCES_V4` key data: the host interface of a local pod and an IPv4
/// address the pod may send from. In the LPM trie (aya's `Key<SourceKey4>`)
/// the prefix length is `32 + n`: the whole interface index, then the
/// first `n` bits of the address, so each entry is one pod's own address
/// (`n = 32`) or a prefix its namespace may send from
/// (`policy.palisade.dev/allowed-source-prefixes`), and a lookup with
/// prefix length 64 matches only entries of that very interface. The
/// interface index is stored native-endian: every lookup compares all of
/// its 32 bits, so the order of its bytes does not matter. The value is
/// [`SOURCE_ALLOWED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey4 {
    /// The pod's host-side interface.
    pub ifindex: u32,
    /// Network-order address bytes.
    pub addr: [u8; 4],
}

/// `SOURCES_V6` key data: as [`SourceKey4`] with prefix length `32 + n`,
/// `n <= 128`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey6 {
    /// The pod's host-side interface.
    pub ifindex: u32,
    /// Network-order address bytes.
    pub addr: [u8; 16],
}

/// The value of every `SOURCES_V4`/`SOURCES_V6` entry (its presence is
/// what counts).
pub const SOURCE_ALLOWED: u8 = 1;

/// `CT_V4` key. One entry per connection per endpoint interface, found
/// with one hash lookup from a packet in either direction: the two ends of
/// the tuple are stored in a fixed order (the *lo* end is the smaller
/// `(address, port)` pair, addresses compared as the words stored here),
/// so a packet and its reply compute the same key.
///
/// `direction` is the [`crate::direction`] a packet travelling from the lo
/// end to the hi end has on `ifindex`; a reply travels hi to lo in the
/// opposite direction and so computes the same key, while a packet whose
/// direction does not fit its addresses (a spoofed one) computes a
/// different key and never matches the connection. Which end opened the
/// connection is [`ct_flags::OPENED_HI_TO_LO`]: a packet travelling the way
/// the opener's did is *established*, one travelling the other way is a
/// *reply*.
///
/// Two pods on one node each have their own entry for a connection between
/// them, so each side is judged by its own policy. IPv4 has its own compact
/// key (20 bytes: hashed and compared in a third of the time of the IPv6
/// key, and IPv4 is most traffic).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey4 {
    /// Address of the lo end (wire bytes in a word).
    pub addr_lo: u32,
    /// Address of the hi end.
    pub addr_hi: u32,
    /// Port of the lo end (ICMP echo: the identifier on the requester's
    /// side, 0 on the responder's; 0 for protocols without ports).
    pub port_lo: u16,
    /// Port of the hi end.
    pub port_hi: u16,
    /// Host-side interface of the endpoint.
    pub ifindex: u32,
    /// IP protocol number.
    pub proto: u8,
    /// [`crate::direction`] of a packet travelling from the lo end to the
    /// hi end.
    pub direction: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 2],
}

/// `CT_V6` key: as [`CtKey4`] with IPv6 addresses (compared word by word).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey6 {
    /// Address of the lo end.
    pub addr_lo: Addr,
    /// Address of the hi end.
    pub addr_hi: Addr,
    /// Port of the lo end.
    pub port_lo: u16,
    /// Port of the hi end.
    pub port_hi: u16,
    /// Host-side interface of the endpoint.
    pub ifindex: u32,
    /// IP protocol number.
    pub proto: u8,
    /// [`crate::direction`] of a packet travelling from the lo end to the
    /// hi end.
    pub direction: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 2],
}

/// `CT` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// `bpf_ktime_get_coarse_ns()` after which the entry is dead. Lookups
    /// treat dead entries as absent; LRU eviction reclaims them, so no
    /// userspace sweep is needed.
    pub expires_ns: u64,
    /// `Config::policy_epoch` when the flow was last judged by policy.
    pub epoch: u32,
    /// [`ct_flags`] bits.
    pub flags: u16,
    /// Explicit padding; always zero.
    pub _pad: u16,
    /// Peer identity when the entry was created (for tools).
    pub peer_identity: u32,
    /// Explicit padding; always zero.
    pub _pad2: u32,
}

/// Bits of [`CtValue::flags`].
pub mod ct_flags {
    /// The opener sent a SYN.
    pub const SYN_SEEN: u16 = 1 << 0;
    /// A reply was seen (TCP: the connection is established).
    pub const REPLY_SEEN: u16 = 1 << 1;
    /// The opener sent a FIN.
    pub const FIN_ORIGINAL: u16 = 1 << 2;
    /// The replier sent a FIN.
    pub const FIN_REPLY: u16 = 1 << 3;
    /// Either side sent a RST.
    pub const RST: u16 = 1 << 4;
    /// Created while the endpoint was in audit mode for a would-drop flow:
    /// revalidated once audit mode is off.
    pub const AUDITED: u16 = 1 << 5;
    /// The opening packet travelled from the key's hi end to its lo end
    /// (see [`super::CtKey4`]).
    pub const OPENED_HI_TO_LO: u16 = 1 << 6;
}

/// A `FLOW_CACHE` slot: a per-CPU, direct-mapped cache of established
/// flows whose conntrack entry needs no write for a while (the exact-match
/// cache of a software switch). A packet matching a live slot is passed
/// without the conntrack lookup; everything that could change the entry
/// (SYN, FIN, RST, fragments, the refresh of its deadline) takes the full
/// path.
///
/// A slot is live while `valid == 1`, `epoch == Config::policy_epoch` and
/// the kernel's jiffies counter is at most `fresh_until_jiffies`, which
/// stands for a moment no later than the one the full path would write the
/// entry's deadline again (at most one second, the conntrack refresh slack,
/// after its last write) and no later than the entry's own expiry, so a
/// slot never outlives its conntrack entry by expiry. (Jiffies, because
/// reading them costs one load; the conversion assumes the longest jiffy,
/// 10 ms, so it can only shorten the slot's life.) An entry removed by revalidation changes the epoch first; an
/// entry evicted from the LRU map (or removed from userspace) is still
/// served from a slot for at most that second. Userspace that deletes
/// conntrack entries and needs an immediate effect zeroes this map too.
///
/// Slots are indexed by `family_index * 2 + direction` times
/// [`capacity::FLOW_CACHE_SLOTS`] plus a hash of the tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheEntry {
    /// The packet's source address.
    pub saddr: Addr,
    /// The packet's destination address.
    pub daddr: Addr,
    /// Source port as the packet carries it (host order).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Host-side interface the packet crossed.
    pub ifindex: u32,
    /// IP protocol number.
    pub proto: u8,
    /// 1 when the slot holds a flow.
    pub valid: u8,
    /// Explicit padding; always zero.
    pub _pad: u16,
    /// `Config::policy_epoch` when the slot was filled.
    pub epoch: u32,
    /// Jiffies until which the slot may answer.
    pub fresh_until_jiffies: u64,
}

/// An `IPCACHE_CACHE` slot: a per-CPU, direct-mapped cache of resolved
/// addresses in front of the ipcache (the exact map, then the LPM trie,
/// whose walk deepens with the number of prefixes). A new flow or a denied
/// packet from a peer this CPU resolved recently costs one array access
/// instead of a hash lookup and a trie walk.
///
/// A slot answers only while `generation == Config::ipcache_generation`.
/// Whoever writes `IPCACHE_EXACT4/6` or `IPCACHE_V4/6` must bump that
/// generation *after* the writes (the agent does after every commit that
/// applied changes); the datapath reads the generation *before* it
/// resolves, so a slot never carries an answer older than its stamp. A
/// write without a bump may be served stale from this cache.
///
/// Slots are indexed by a hash of the address's words
/// ([`capacity::IPCACHE_CACHE_SLOTS`] per CPU, both families).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcacheCacheEntry {
    /// The resolved address.
    pub addr: Addr,
    /// `Config::ipcache_generation` read before resolving.
    pub generation: u32,
    /// [`crate::family`] of `addr`; 0: empty slot.
    pub family: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 3],
    /// What the ipcache answered.
    pub value: IpcacheValue,
}

/// `FRAGS` key: one fragmented datagram on one endpoint interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address.
    pub saddr: Addr,
    /// Destination address.
    pub daddr: Addr,
    /// Fragment identification (IPv4: 16 bits; IPv6: 32 bits).
    pub id: u32,
    /// Host-side interface of the endpoint.
    pub ifindex: u32,
    /// IP protocol number of the datagram.
    pub proto: u8,
    /// [`crate::direction`].
    pub direction: u8,
    /// [`crate::family`].
    pub family: u8,
    /// Explicit padding; always zero.
    pub _pad: u8,
}

/// `FRAGS` value: the allowed first fragment's ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    /// When the state dies (coarse monotonic ns).
    pub expires_ns: u64,
    /// Source port of the datagram.
    pub sport: u16,
    /// Destination port of the datagram.
    pub dport: u16,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

/// A `METRICS` slot (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (`skb->len`).
    pub bytes: u64,
}

/// `EP_DROPS` key: drops per endpoint, direction and reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointDropKey {
    /// [`EndpointInfo::ep_id`].
    pub ep_id: u32,
    /// [`crate::direction`].
    pub direction: u8,
    /// [`crate::DropReason`] value.
    pub reason: u8,
    /// [`crate::verdict::DROPPED`] or [`crate::verdict::AUDIT`].
    pub verdict: u8,
    /// Explicit padding; always zero.
    pub _pad: u8,
}

const _: () = {
    assert!(size_of::<EndpointInfo>() == 16 && align_of::<EndpointInfo>() == 4);
    assert!(size_of::<PolicyKey>() == 12 && align_of::<PolicyKey>() == 4);
    assert!(size_of::<PolicyValue>() == 24 && align_of::<PolicyValue>() == 4);
    assert!(size_of::<TierCodes>() == 8);
    assert!(size_of::<TierTable>() == TIER_SEGMENTS * 10);
    assert!(size_of::<PortBitmap>() == 8192);
    assert!(size_of::<IpcacheValue>() == 8);
    assert!(size_of::<SourceKey4>() == 8 && align_of::<SourceKey4>() == 4);
    assert!(size_of::<SourceKey6>() == 20 && align_of::<SourceKey6>() == 4);
    assert!(size_of::<CtKey4>() == 20 && align_of::<CtKey4>() == 4);
    assert!(size_of::<CtKey6>() == 44 && align_of::<CtKey6>() == 4);
    assert!(size_of::<CtValue>() == 24 && align_of::<CtValue>() == 8);
    assert!(size_of::<FlowCacheEntry>() == 56 && align_of::<FlowCacheEntry>() == 8);
    assert!(size_of::<IpcacheCacheEntry>() == 32 && align_of::<IpcacheCacheEntry>() == 4);
    assert!(size_of::<FragKey>() == 44);
    assert!(size_of::<FragValue>() == 16);
    assert!(size_of::<Counter>() == 16);
    assert!(size_of::<EndpointDropKey>() == 8);
};
