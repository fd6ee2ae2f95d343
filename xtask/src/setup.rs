//! `cargo xtask setup`: everything a fresh machine lacks, installed
//! idempotently (a no-op in seconds when already done):
//! * the nightly toolchain's `rust-src` (the eBPF crate builds `core`) and
//!   `clippy` (the eBPF crate is linted too),
//! * `bpf-linker` 0.13 built against the nightly's own LLVM 22,
//! * Debian packages the tests and the lab use (iproute2, nftables,
//!   iputils-ping, graphviz; the reference CNI plugins, and Go with libcni's source,
//!   from which the lab builds its small CNI runtime driver; Chromium and
//!   its WebDriver server for the graph page's browser test),
//! * a real API server for the cluster tests: etcd (Debian's `etcd-server`)
//!   and a pinned `kube-apiserver` built once from Debian's `kubernetes`
//!   source package and cached by version (see [`kube_apiserver`]).

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::cmd::{output, run as run_cmd};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// (what shows the package is installed: a command on the PATH's system
/// directories, or an absolute path; the package).
const DEBIAN_PACKAGES: [(&str, &str); 11] = [
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("ping", "iputils-ping"),
    ("/usr/lib/cni/ptp", "containernetworking-plugins"),
    ("go", "golang-go"),
    (
        "/usr/share/gocode/src/github.com/containernetworking/cni/libcni",
        "golang-github-appc-cni-dev",
    ),
    ("etcd", "etcd-server"),
    // The API server tests make a service account signing key with it.
    ("openssl", "openssl"),
    // `palisade graph -o dot` output is checked by Graphviz's parser.
    ("dot", "graphviz"),
    // The graph's HTML page is tested in a real headless browser.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];

pub fn run() -> anyhow::Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    kube_apiserver()?;
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
    install_packages(&DEBIAN_PACKAGES)
}

fn install_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
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

/// Debian's source package of Kubernetes 1.20.2 (bookworm): the pinned
/// version the cluster tests run against.
const KUBERNETES_SOURCE: &str = "kubernetes=1.20.5+really1.20.2-1.1+deb12u1";
/// The source package's directory once unpacked.
const KUBERNETES_SOURCE_DIR: &str = "kubernetes-1.20.2";
/// Debian's Go for that source (newer ones reject parts of its vendor tree).
const GO_BIN: &str = "/usr/lib/go-1.19/bin";
/// Build prerequisites: (what shows the package is installed, the package).
const KUBE_BUILD_PACKAGES: [(&str, &str); 4] = [
    ("/usr/bin/rsync", "rsync"),
    ("/usr/lib/go-1.19/bin/go", "golang-1.19-go"),
    (
        "/usr/share/gocode/src/github.com/modern-go/reflect2",
        "golang-github-modern-go-reflect2-dev",
    ),
    (
        "/usr/share/gocode/src/github.com/json-iterator/go",
        "golang-github-json-iterator-go-dev",
    ),
];
/// Vendored modules replaced by Debian's newer copies: the 1.20 vendor
/// tree's reflect2 1.0.1 and json-iterator 1.1.10 break on Go 1.18+ (the
/// server panics decoding Pods and NetworkPolicies).
const REPLACED_VENDOR: [&str; 2] = [
    "github.com/modern-go/reflect2",
    "github.com/json-iterator/go",
];
/// A `deb-src` entry for bookworm, in a file of our own so the machine's
/// sources stay as they are; rewritten only when it differs.
const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/palisade-deb-src.sources";
const DEB_SRC: &str = "Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// Builds the pinned kube-apiserver into the cache (see
/// [`palisade_lab::apiserver::cached_kube_apiserver`]) unless it is there.
/// The build takes about 10 minutes and 3-4 GB, all of which but the static
/// binary is removed afterwards (CI's disk is limited).
fn kube_apiserver() -> anyhow::Result<()> {
    let bin = palisade_lab::apiserver::cached_kube_apiserver();
    let want = format!("v{}", palisade_lab::apiserver::KUBE_APISERVER_VERSION);
    if let Some(v) = output(Command::new(&bin).arg("--version"))
        && v.contains(&want)
    {
        return Ok(());
    }
    let cache = bin.parent().context("cache path has no parent")?;
    eprintln!(
        "setup: building kube-apiserver {want} from Debian's source into {} \
         (once; about 10 minutes and 4 GB of temporary disk)",
        cache.display()
    );
    install_packages(&KUBE_BUILD_PACKAGES)?;
    if std::fs::read_to_string(DEB_SRC_FILE).ok().as_deref() != Some(DEB_SRC) {
        std::fs::write(DEB_SRC_FILE, DEB_SRC).with_context(|| format!("writing {DEB_SRC_FILE}"))?;
        run_cmd(Command::new("apt-get").arg("update"))?;
    }
    // A build directory beside the cache entry, removed whatever happens.
    let work = cache.with_file_name(format!(
        "build-kube-apiserver-{}",
        palisade_lab::apiserver::KUBE_APISERVER_VERSION
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = build_kube_apiserver(&work, &bin);
    if let Err(e) = std::fs::remove_dir_all(&work) {
        eprintln!("setup: could not remove {}: {e}", work.display());
    }
    result?;
    eprintln!("setup: kube-apiserver {want} cached at {}", bin.display());
    Ok(())
}

fn build_kube_apiserver(work: &Path, bin: &Path) -> anyhow::Result<()> {
    run_cmd(
        Command::new("apt-get")
            .args(["source", "--download-only", KUBERNETES_SOURCE])
            .current_dir(work),
    )?;
    // Only the upstream tarball: Debian's patches touch kubectl's printing,
    // not the API server.
    let orig = std::fs::read_dir(work)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".orig.tar.gz"))
        .with_context(|| format!("no .orig.tar.gz downloaded into {}", work.display()))?;
    run_cmd(Command::new("tar").arg("xzf").arg(&orig).current_dir(work))?;
    let src = work.join(KUBERNETES_SOURCE_DIR);
    for module in REPLACED_VENDOR {
        let from = Path::new("/usr/share/gocode/src").join(module);
        let to = src.join("vendor").join(module);
        std::fs::remove_dir_all(&to).with_context(|| format!("removing {}", to.display()))?;
        std::fs::create_dir_all(&to)?;
        // The package's own files only: no tests, no sub-packages (the
        // vendor tree never had them).
        for e in std::fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))? {
            let p = e?.path();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if p.is_file()
                && (name.ends_with(".go") || name.ends_with(".s"))
                && !name.ends_with("_test.go")
            {
                std::fs::copy(&p, to.join(&name))
                    .with_context(|| format!("copying {}", p.display()))?;
            }
        }
    }
    let path = format!("{GO_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    run_cmd(
        Command::new("nice")
            .args(["make", "WHAT=cmd/kube-apiserver"])
            .current_dir(&src)
            .env("PATH", path)
            // Offline: everything comes from the vendor tree.
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=vendor")
            .env("GOCACHE", work.join("gocache"))
            .env("GOPATH", work.join("gopath"))
            // No git tree: the version `--version` reports.
            .env(
                "KUBE_GIT_VERSION",
                format!("v{}", palisade_lab::apiserver::KUBE_APISERVER_VERSION),
            )
            .env("KUBE_GIT_TREE_STATE", "clean"),
    )?;
    let built = src.join("_output/local/bin/linux/amd64/kube-apiserver");
    let tmp = bin.with_extension("tmp");
    std::fs::create_dir_all(bin.parent().unwrap_or(Path::new("/")))?;
    std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&tmp, bin).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}
