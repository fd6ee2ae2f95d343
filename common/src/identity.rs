//! Security identities: the `u32` the ipcache maps an address to and the
//! policy map is keyed on.
//!
//! | range                      | meaning                                              |
//! |----------------------------|------------------------------------------------------|
//! | `0`                        | [`IDENTITY_ANY`]: policy wildcard, never an address  |
//! | `1`                        | [`IDENTITY_HOST`]: an address of this node           |
//! | `2`                        | [`IDENTITY_WORLD`]: an address no known prefix covers|
//! | `3..256`                   | reserved                                             |
//! | `256..CIDR_IDENTITY_BASE`  | pods: one per (namespace, label set, named ports)    |
//! | `CIDR_IDENTITY_BASE..`     | CIDR regions: one per prefix some policy mentions    |
//!
//! A pod's address carries two identities ([`crate::IpcacheValue`]): its pod
//! identity, and the CIDR identity of the most specific policy prefix that
//! contains it. `ipBlock` peers are compiled to CIDR identities only, so they
//! match pod addresses too (as upstream conformance requires) without
//! matching other pods that share the pod's labels.
//!
//! CIDR regions make `except` exact: every prefix mentioned anywhere (a
//! `cidr` or an `except`) is a region, an address belongs to the region of its
//! longest matching prefix, and an `ipBlock {cidr C, except E..}` allows
//! region R iff `R ⊆ C` and `R ⊄ E` for every `E`. Because mentioned prefixes
//! are either nested or disjoint this is exactly `addr ∈ C \ ∪E`.

/// Policy-key wildcard: the entry applies to every peer (a rule without
/// `from`/`to`). Never stored in the ipcache.
pub const IDENTITY_ANY: u32 = 0;
/// Addresses of this node (and host-network pods on it).
pub const IDENTITY_HOST: u32 = 1;
/// Addresses that no policy prefix and no known pod covers.
pub const IDENTITY_WORLD: u32 = 2;
/// First identity handed out to pods.
pub const POD_IDENTITY_BASE: u32 = 256;
/// First identity handed out to CIDR regions.
pub const CIDR_IDENTITY_BASE: u32 = 1 << 24;

/// What kind of peer an identity stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    /// [`IDENTITY_ANY`].
    Any,
    /// [`IDENTITY_HOST`].
    Host,
    /// [`IDENTITY_WORLD`].
    World,
    /// A reserved value with no meaning yet.
    Reserved,
    /// A pod identity.
    Pod,
    /// A CIDR region identity.
    Cidr,
}

/// Classifies an identity value.
pub const fn identity_kind(id: u32) -> IdentityKind {
    match id {
        IDENTITY_ANY => IdentityKind::Any,
        IDENTITY_HOST => IdentityKind::Host,
        IDENTITY_WORLD => IdentityKind::World,
        _ if id < POD_IDENTITY_BASE => IdentityKind::Reserved,
        _ if id < CIDR_IDENTITY_BASE => IdentityKind::Pod,
        _ => IdentityKind::Cidr,
    }
}
