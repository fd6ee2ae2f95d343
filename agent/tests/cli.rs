//! The command line without privileges: bad configuration and a missing
//! agent give one clear line and a non-zero exit, never a panic.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().expect("run palisade");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    (out.status.success(), err)
}

#[test]
fn bad_configuration_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cases: [(&[&str], &str); 4] = [
        (
            &["agent", "--node-name", "Bad_Name", "--manifests", "/"],
            "palisade: --node-name \"Bad_Name\": must be",
        ),
        (
            &[
                "agent",
                "--node-name",
                "n1",
                "--manifests",
                "/nonexistent/palisade",
            ],
            "palisade: --manifests /nonexistent/palisade: No such file",
        ),
        (
            &[
                "agent",
                "--node-name",
                "n1",
                "--manifests",
                "/",
                "--health-addr",
                "nowhere",
            ],
            "palisade: --health-addr \"nowhere\": expected IP:PORT or `none`",
        ),
        (
            &[
                "agent",
                "--node-name",
                "n1",
                "--manifests",
                "/",
                "--state-dir",
                "relative",
            ],
            "palisade: --state-dir relative: must be an absolute path",
        ),
    ];
    for (args, want) in cases {
        let (ok, err) = run(args);
        assert!(!ok, "{args:?}");
        assert!(err.starts_with(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Pins outside bpffs would not outlive the agent: refused.
    let (ok, err) = run(&[
        "agent",
        "--node-name",
        "n1",
        "--manifests",
        "/",
        "--health-addr",
        "none",
        "--state-dir",
        state.to_str().unwrap(),
        "--bpffs-dir",
        dir.path().join("pins").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("not on a bpf filesystem"), "{err}");
}

#[test]
fn sync_without_agent_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let (ok, err) = run(&["sync", "--socket", sock.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.starts_with("palisade: no agent is listening on") && err.contains("palisade agent"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
