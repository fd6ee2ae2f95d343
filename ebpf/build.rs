//! Rebuild the eBPF object when the linker changes: building this crate has
//! an undeclared dependency on the `bpf-linker` binary.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
