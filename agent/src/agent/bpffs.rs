//! Checks that pins go to a real bpf filesystem (pins elsewhere fail, and
//! a bpffs mounted only in a private mount namespace dies with it).

use std::path::Path;

/// `BPF_FS_MAGIC` from `linux/magic.h`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `SYSFS_MAGIC`: `/sys` itself, where a bpffs should be mounted on.
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// The nearest existing ancestor of `dir` (itself included) and the magic
/// number of the filesystem it is on.
fn nearest_fs(dir: &Path) -> Option<(&Path, i64)> {
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.exists() {
            let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).ok()?;
            // SAFETY: an all-zero statfs is valid; c is NUL-terminated.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers.
            if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
                return None;
            }
            #[allow(clippy::unnecessary_cast)]
            return Some((d, st.f_type as i64));
        }
        p = d.parent();
    }
    None
}

/// Whether `dir` (or its nearest existing ancestor) is on bpffs.
pub fn is_bpffs(dir: &Path) -> bool {
    nearest_fs(dir).is_some_and(|(_, magic)| magic == BPF_FS_MAGIC)
}

/// For a `dir` not on bpffs: what is there and the likely reason. The
/// usual trap: `ip netns exec` mounts a fresh sysfs on `/sys` for the
/// command, so a bpffs mounted on the host's `/sys/fs/bpf` is not visible
/// inside it although `mount` on the host shows it.
pub fn explain_not_bpffs(dir: &Path) -> String {
    let Some((found, magic)) = nearest_fs(dir) else {
        return format!(
            "cannot inspect {} or any parent (mount one: `mount -t bpf bpf /sys/fs/bpf`)",
            dir.display()
        );
    };
    let fs = match magic {
        SYSFS_MAGIC => "sysfs".to_string(),
        0x0102_1994 => "tmpfs".to_string(),
        0xEF53 => "ext2/3/4".to_string(),
        0x794c_7630 => "overlayfs".to_string(),
        0x5846_5342 => "xfs".to_string(),
        m => format!("a filesystem with magic {m:#x}"),
    };
    let mut s = format!(
        "the nearest existing directory, {}, is on {fs}",
        found.display()
    );
    if magic == SYSFS_MAGIC && dir.starts_with("/sys/fs/bpf") {
        s.push_str(
            "; /sys/fs/bpf here is the empty mount point of a sysfs without the bpffs \
             mounted on it. If the host has a bpffs there, this process sees another /sys: \
             `ip netns exec` mounts a fresh sysfs for its command, hiding the host's \
             /sys/fs/bpf (enter only the network namespace, e.g. `nsenter --net=...`, or \
             give --bpffs-dir on a bpffs visible here); otherwise mount one: \
             `mount -t bpf bpf /sys/fs/bpf`",
        );
    } else {
        s.push_str("; mount one (`mount -t bpf bpf /sys/fs/bpf`) or give --bpffs-dir on a bpffs");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_directory_found_and_its_filesystem() {
        let tmp = std::env::temp_dir();
        let s = explain_not_bpffs(&tmp.join("palisade-no-such-dir/node"));
        assert!(
            s.starts_with(&format!(
                "the nearest existing directory, {}, is on ",
                tmp.display()
            )),
            "{s}"
        );
        assert!(s.contains("mount -t bpf bpf"), "{s}");
        assert!(!is_bpffs(&tmp));
    }
}
