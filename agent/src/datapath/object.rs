//! The eBPF object built by `build.rs`, embedded in the binary.

/// The ELF object with Palisade's programs and maps.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/palisade"));
