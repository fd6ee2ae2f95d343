//! `palisade diff` offline on the three-tier example: a change that
//! opens (exit 1, with the block-metadata warning), one that closes
//! (exit 3), and renames and reorderings that change nothing (exit 0);
//! errors exit 2.

use std::path::{Path, PathBuf};
use std::process::Command;

use palisade_analysis::diff::DiffReport;

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

fn three_tier() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-tier")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run palisade");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// A copy of the example without the files `leave_out`.
fn copy(leave_out: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(three_tier()).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        if !leave_out.contains(&name.as_str()) {
            std::fs::copy(&f, dir.path().join(&name)).unwrap();
        }
    }
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn block_metadata_opens_egress_and_is_warned_about() {
    let before = copy(&["5-block-metadata.yaml"]);
    let changed = three_tier().join("5-block-metadata.yaml");
    let (rc, out, err) = run(&[
        "diff",
        "--before",
        path(before.path()),
        "-f",
        path(&changed),
        "-o",
        "json",
    ]);
    assert_eq!(rc, 1, "{err}\n{out}");
    let rep: DiffReport = serde_json::from_str(&out).unwrap();
    assert!(rep.opens() && !rep.closes(), "{rep:#?}");
    assert!(rep.added_pods.is_empty() && rep.removed_pods.is_empty());
    // Every production pod may now reach the world but the metadata
    // addresses.
    let s = rep
        .summary
        .iter()
        .find(|s| s.from == "production/*" && s.to.starts_with("cidr 0.0.0.0/0 except"))
        .unwrap_or_else(|| panic!("{:#?}", rep.summary));
    assert_eq!(s.verb, "opens");
    assert_eq!(s.ports, "any port");
    assert_eq!(s.sources, 4);
    assert!(
        !rep.changes
            .iter()
            .any(|c| c.to.contains("169.254.169.254/32") && !c.to.contains("except")),
        "the metadata address itself is not opened"
    );
    assert_eq!(rep.warnings.len(), 1, "{:?}", rep.warnings);
    let w = &rep.warnings[0];
    assert!(
        w.contains("production/block-metadata egress[0]")
            && w.contains("0.0.0.0/0 except 169.254.169.254/32")
            && w.contains("4 pod(s) other policies had isolated"),
        "{w}"
    );
    // Text: one summary line per group, the warning first.
    let (rc, out, _) = run(&[
        "diff",
        "--before",
        path(before.path()),
        "-f",
        path(&changed),
    ]);
    assert_eq!(rc, 1);
    assert!(
        out.starts_with("WARNING: NetworkPolicy production/block-metadata"),
        "{out}"
    );
    assert!(
        out.contains(
            "opens production/* -> cidr 0.0.0.0/0 except 100.100.100.200/32, 169.254.169.254/32"
        ),
        "{out}"
    );
}

#[test]
fn removing_the_scrape_closes_only() {
    let after = copy(&["4-allow-monitoring-scrape.yaml"]);
    let (rc, out, err) = run(&[
        "diff",
        "--before",
        path(&three_tier()),
        "--after",
        path(after.path()),
        "-o",
        "json",
    ]);
    assert_eq!(rc, 3, "{err}\n{out}");
    let rep: DiffReport = serde_json::from_str(&out).unwrap();
    assert!(!rep.opens());
    assert_eq!(rep.summary.len(), 1, "{:#?}", rep.summary);
    let s = &rep.summary[0];
    assert_eq!(
        (
            s.verb.as_str(),
            s.from.as_str(),
            s.to.as_str(),
            s.ports.as_str()
        ),
        ("closes", "monitoring/*", "production/*", "TCP 9090")
    );
    assert_eq!((s.sources, s.destinations), (1, 4));
    assert!(rep.warnings.is_empty());
}

#[test]
fn renames_and_reorderings_change_nothing() {
    // Every NetworkPolicy renamed and moved to another file (so loaded
    // in another order): no change at all.
    let dir = copy(&[]);
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        if text.contains("kind: NetworkPolicy") {
            std::fs::remove_file(&f).unwrap();
            let renamed = text.replace("\n  name: ", "\n  name: v2-");
            std::fs::write(
                dir.path()
                    .join(format!("z-{}", f.file_name().unwrap().to_str().unwrap())),
                renamed,
            )
            .unwrap();
        }
    }
    let (rc, out, err) = run(&[
        "diff",
        "--before",
        path(&three_tier()),
        "--after",
        path(dir.path()),
    ]);
    assert_eq!(rc, 0, "{err}\n{out}");
    assert_eq!(out, "no change in allowed connectivity\n");
}

#[test]
fn errors_exit_2() {
    let (rc, _, err) = run(&[
        "diff",
        "--before",
        "/nonexistent-palisade-dir",
        "--after",
        "/tmp",
    ]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("/nonexistent-palisade-dir"), "{err}");
}
