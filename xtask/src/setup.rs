//! `cargo xtask setup`: everything a fresh machine lacks, installed
//! idempotently (a no-op in seconds when already done):
//! * the nightly toolchain's `rust-src` (the eBPF crate builds `core`) and
//!   `clippy` (the eBPF crate is linted too),
//! * `bpf-linker` 0.13 built against the nightly's own LLVM 22,
//! * Debian packages the tests and the lab use (iproute2, nftables,
//!   iputils-ping; the reference CNI plugins, and Go with libcni's source,
//!   from which the lab builds its small CNI runtime driver).

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::cmd::{output, run as run_cmd};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// (what shows the package is installed: a command on the PATH's system
/// directories, or an absolute path; the package).
const DEBIAN_PACKAGES: [(&str, &str); 6] = [
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("ping", "iputils-ping"),
    ("/usr/lib/cni/ptp", "containernetworking-plugins"),
    ("go", "golang-go"),
    (
        "/usr/share/gocode/src/github.com/containernetworking/cni/libcni",
        "golang-github-appc-cni-dev",
    ),
];

pub fn run() -> anyhow::Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    eprintln!("setup: done");
    Ok(())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if installed.is_empty() {
        run_cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    // rust-src: the eBPF crate builds `core`; clippy: `cargo xtask test`
    // lints the eBPF crate with the nightly's clippy.
    for component in ["rust-src", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            run_cmd(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                "nightly",
            ]))?;
        }
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Some(v) = output(Command::new("bpf-linker").arg("--version"))
        && v.contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    // bpf-linker must use the LLVM the nightly compiler was built with;
    // plain `cargo install bpf-linker` would pick a newer LLVM and fail.
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("rustc +nightly --print sysroot failed (is the nightly toolchain installed?)")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.starts_with("libLLVM") && n.contains("-rust-") && n.ends_with(".so"))
        .with_context(|| format!("no libLLVM-*-rust-*.so in {}", lib.display()))?;
    let llvm = llvm
        .trim_start_matches("lib")
        .trim_end_matches(".so")
        .to_string();
    let major = llvm
        .trim_start_matches("LLVM-")
        .split(['.', '-'])
        .next()
        .unwrap_or_default()
        .to_string();
    if major.parse::<u32>().is_err() {
        bail!("cannot tell the LLVM major version from {llvm}");
    }
    let rustflags = format!(
        "-L {lib} -l dylib={llvm} -C link-arg=-Wl,-rpath,{lib}",
        lib = lib.display()
    );
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{major},no-llvm-linking"))
            .env("RUSTFLAGS", rustflags),
    )
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(probe, _)| {
            if probe.starts_with('/') {
                return !Path::new(probe).exists();
            }
            !["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(probe).exists())
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run_cmd(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
