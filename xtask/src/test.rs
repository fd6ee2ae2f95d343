//! `cargo xtask test`: the README's test command. Sets the machine up, then
//! runs every test of the workspace (privileged ones included: run as root),
//! then `cargo fmt --check` and clippy with warnings denied (the eBPF crate
//! with the nightly toolchain, for the BPF target).

use std::process::Command;

use anyhow::bail;

use crate::cmd::run as run_cmd;

pub fn run(no_lint: bool, args: &[String]) -> anyhow::Result<()> {
    crate::setup::run()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the test suite loads eBPF programs and creates network namespaces: run it as root");
    }
    run_cmd(
        Command::new("cargo")
            // The default members: everything but the eBPF crate, which only
            // builds for the BPF target (agent/build.rs builds it).
            .args(["test", "--no-fail-fast"])
            .args(args),
    )?;
    if !no_lint {
        run_cmd(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
        run_cmd(Command::new("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
        // The eBPF crate is not a default member: lint it for its own target.
        run_cmd(Command::new("cargo").args([
            "+nightly",
            "clippy",
            "-p",
            "palisade-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    Ok(())
}
