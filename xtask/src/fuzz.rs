//! `cargo xtask fuzz`: the random-frame test (`tests/tests/fuzz.rs`) for as
//! many frames as asked, built optimised: both programs against the
//! reference classifier and the policy model, reporting verdict mismatches
//! and frames allowed by mistake.

use std::process::Command;

use crate::cmd::run as run_cmd;

pub fn run(frames: u64) -> anyhow::Result<()> {
    crate::require_root("the fuzz run")?;
    run_cmd(
        Command::new("cargo")
            .args([
                "test",
                "--release",
                "--package",
                "palisade-tests",
                "--test",
                "fuzz",
                "random_frames",
                "--",
                "--nocapture",
            ])
            .env("PALISADE_FUZZ_FRAMES", frames.to_string()),
    )
}
