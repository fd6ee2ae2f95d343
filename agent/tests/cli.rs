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

/// As root, the agent refuses world-writable state and manifests
/// directories before it loads or binds anything, naming the directory and
/// the fix. (Not root: the check does not apply and the test says so.)
#[test]
fn world_writable_directories_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the agent does not check directories; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    let state = dir.path().join("state");
    for d in [&manifests, &state] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let args = |socket: &std::path::Path| {
        vec![
            "agent".to_string(),
            "--node-name".into(),
            "n1".into(),
            "--manifests".into(),
            manifests.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--socket".into(),
            socket.display().to_string(),
            "--health-addr".into(),
            "none".into(),
            "--bpffs-dir".into(),
            dir.path().join("pins").display().to_string(),
        ]
    };
    let run_args = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&a)
    };
    let sock = dir.path().join("run/agent.sock");
    for (d, flag) in [(&manifests, "--manifests"), (&state, "--state-dir")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (ok, err) = run_args(args(&sock));
        assert!(!ok, "{flag}");
        assert!(
            err.starts_with(&format!("palisade: {flag} {}: world-writable", d.display())),
            "{err}"
        );
        assert!(err.contains(&format!("chmod o-w {}", d.display())), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // A world-writable socket directory too.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (ok, err) = run_args(args(&open.join("agent.sock")));
    assert!(!ok);
    assert!(
        err.starts_with(&format!(
            "palisade: --socket {}: world-writable",
            open.display()
        )),
        "{err}"
    );
    // With private directories it gets past them (to the next check: the
    // pins are not on bpffs here), and creates the socket's directory 0700.
    let (ok, err) = run_args(args(&sock));
    assert!(!ok);
    assert!(err.contains("not on a bpf filesystem"), "{err}");
    let mode = std::fs::metadata(sock.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}
