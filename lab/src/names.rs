//! Unique names: lab ids that embed the creating pid (so `cleanup_stale` can
//! tell leftovers of dead runs), and Calico-style host veth names.
//!
//! A lab id is `<prefix>-<pid>-<counter><random>`; every namespace of the lab
//! is `<lab id>-<role>-<name>`. Links live inside the lab's namespaces, so
//! their names only need to be unique per namespace.

use std::sync::atomic::{AtomicU32, Ordering};

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh lab id for `prefix`: unique within this process by the counter and
/// across processes by the pid, plus 16 random bits against pid reuse races.
pub(crate) fn lab_id(prefix: &str) -> String {
    let counter = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{counter}{:04x}",
        std::process::id(),
        random_u32() & 0xffff
    )
}

/// Parses the pid out of a namespace name made by [`lab_id`] for `prefix`.
pub(crate) fn creator_pid(prefix: &str, netns: &str) -> Option<u32> {
    let rest = netns.strip_prefix(prefix)?.strip_prefix('-')?;
    let (pid, tail) = rest.split_once('-')?;
    if tail.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether `prefix` can start lab ids: non-empty, short, `[A-Za-z0-9_-]`.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` can be a node/pod/host name: `[a-z0-9-]`, 1..=40 bytes.
pub(crate) fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Calico's host veth naming: `cali` + 11 hex digits of a hash of
/// `<namespace>.<pod>` (Calico uses SHA-1; FNV-1a is enough here), 15 bytes.
pub(crate) fn host_veth_name(namespace: &str, pod: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes().chain(*b".").chain(pod.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("cali{:011x}", hash & 0x0fff_ffff_ffff)
}

/// 32 random bits from the kernel (falls back to time if unavailable).
pub(crate) fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: `buf` is valid for 4 writable bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(buf)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0x5eed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_id_round_trips_pid() {
        let id = lab_id("pltest");
        let netns = format!("{id}-node-a");
        assert_eq!(creator_pid("pltest", &netns), Some(std::process::id()));
        assert_eq!(creator_pid("pl", &netns), None);
        assert_eq!(creator_pid("pltest", "pltest-x-1"), None);
    }

    #[test]
    fn host_veth_name_is_calico_shaped() {
        let name = host_veth_name("default", "web");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("cali"));
        assert_ne!(name, host_veth_name("default", "web2"));
    }
}
