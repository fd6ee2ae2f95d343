//! Labs leave no namespace behind: on drop, on panic, and after a crash
//! (`cleanup_stale`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;

use palisade_lab::{Lab, LabSpec, cleanup_stale, namespaces_with_prefix};

/// Namespaces this process made under `prefix` (other test processes may
/// run the same tests at the same time).
fn ours(prefix: &str) -> Vec<String> {
    namespaces_with_prefix(&format!("{prefix}-{}", std::process::id()))
}

#[test]
fn dropping_a_lab_removes_its_namespaces() {
    let prefix = "pltest-drop";
    let lab = LabSpec::new(prefix)
        .node("n1")
        .node("n2")
        .pod("a", "default", "n1")
        .external_host("world", "n2", &["203.0.113.10".parse().unwrap()])
        .up()
        .expect("lab up");
    // fabric + 2 nodes + pod + external host
    assert_eq!(namespaces_with_prefix(lab.id()).len(), 5);
    assert_eq!(ours(prefix).len(), 5);
    drop(lab);
    assert_eq!(ours(prefix), Vec::<String>::new());
}

#[test]
fn a_panic_inside_a_lab_scope_still_cleans_up() {
    let prefix = "pltest-panic";
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let lab = LabSpec::new(prefix)
            .node("n1")
            .pod("a", "default", "n1")
            .up()
            .expect("lab up");
        assert_eq!(ours(prefix).len(), 3);
        let _still_borrowed = lab.pod("a");
        panic!("test failure inside the lab");
    }));
    assert!(outcome.is_err());
    assert_eq!(ours(prefix), Vec::<String>::new());
}

#[test]
fn a_failed_build_cleans_up_what_it_built() {
    let prefix = "pltest-fail";
    let err = LabSpec::new(prefix)
        .node("n1")
        .pod("a", "default", "nowhere")
        .up()
        .expect_err("unknown node");
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert_eq!(ours(prefix), Vec::<String>::new());
}

#[test]
fn cleanup_stale_removes_leftovers_of_dead_processes_only() {
    // Per-process prefix: concurrent runs of this test would otherwise
    // (rightly) clean up each other's fake leftovers.
    let prefix = &format!("pltest-stale-p{}", std::process::id());
    let dead_pid = {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait true");
        pid
    };
    let leftover = format!("{prefix}-{dead_pid}-0beef-node-n1");
    let out = Command::new("ip")
        .args(["netns", "add", &leftover])
        .output()
        .expect("ip netns add");
    assert!(out.status.success(), "{out:?}");
    let live: Lab = Lab::new(prefix).expect("live lab");

    let removed = cleanup_stale(prefix).expect("cleanup_stale");
    assert_eq!(removed, vec![leftover.clone()]);
    let remaining = namespaces_with_prefix(prefix);
    assert!(!remaining.contains(&leftover), "{remaining:?}");
    // The live lab (this process) was left alone.
    assert_eq!(ours(prefix), vec![live.fabric_netns().to_owned()]);
    drop(live);
    assert_eq!(ours(prefix), Vec::<String>::new());
}
