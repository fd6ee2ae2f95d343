//! `palisade monitor`: drop and audit events, live. The agent drains the
//! `EVENTS` ring ([`reader`]), names both ends of each event and attributes
//! it to policies ([`event`], from the [`Directory`] the agent rebuilds
//! after every commit), and fans it out ([`Hub`]) to the monitors connected
//! to the control socket ([`stream`]). Each subscriber has a bounded queue:
//! a slow monitor loses events (counted, and reported to it) and never
//! holds up the ring, the agent or the other monitors. The recent drops
//! are also counted ([`aggregate`]) for `palisade graph --live`.
//!
//! ```text
//! → {"op":"monitor","namespace":"prod","type":"all"}
//! ← {"ok":true}
//! ← {"event":{"type":"drop","reason":"policy-denied","direction":"ingress",...}}
//! ← {"stats":{"emitted":12,"rate_limited":0,"ring_full":0,"lost":0}}
//! ```

pub mod aggregate;
pub mod directory;
pub mod event;
pub mod hub;
pub mod reader;
pub mod stream;

pub use directory::{Directory, LocalPod};
pub use event::{EventType, MonitorEvent, MonitorFilter, Peer, StreamLine, StreamStats};
pub use hub::Hub;
