//! Builds the eBPF programs (crate `palisade-ebpf`, nightly toolchain with
//! `-Z build-std=core`, linked by bpf-linker) into `OUT_DIR/palisade`, which
//! `src/datapath/object.rs` embeds: one binary is all a node needs.
//! `cargo xtask setup` installs the toolchain parts this needs.

fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf");
    let ebpf = aya_build::Package {
        name: "palisade-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
