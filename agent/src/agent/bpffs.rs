//! Checks that pins go to a real bpf filesystem (pins elsewhere fail, and
//! a bpffs mounted only in a private mount namespace dies with it).

use std::path::Path;

/// `BPF_FS_MAGIC` from `linux/magic.h`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `dir` (or its nearest existing ancestor) is on bpffs.
pub fn is_bpffs(dir: &Path) -> bool {
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.exists() {
            let Ok(c) = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()) else {
                return false;
            };
            // SAFETY: an all-zero statfs is valid; c is NUL-terminated.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers.
            if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
                return false;
            }
            #[allow(clippy::unnecessary_cast)]
            return st.f_type as i64 == BPF_FS_MAGIC;
        }
        p = d.parent();
    }
    false
}
