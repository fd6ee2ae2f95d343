//! A real browser opens `palisade graph -o html`'s page: headless Chromium
//! (Debian's `chromium`), driven over WebDriver by its `chromedriver`, with
//! the network cut off. The test checks through the DOM that the drawn nodes
//! and edges are the graph's (as built here and as embedded in the page),
//! that clicking an edge shows its rules and clicking a node its pods (and
//! Enter on a focused node too), that dragging pans and the wheel and
//! buttons zoom, that the console has no
//! errors and nothing was fetched, and that a screenshot shows the drawing
//! (saved as `html_browser.png` in Cargo's test temporary directory).
//!
//! Without Chromium the test skips with a message; with `CI` set it fails
//! instead (`cargo xtask setup` installs it).

use std::{
    net::{TcpListener, TcpStream},
    panic::AssertUnwindSafe,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{
        InputSource, KeyAction, KeyActions, MOUSE_BUTTON_LEFT, MouseActions, PointerAction,
        WheelAction, WheelActions,
    },
    key::Key,
    wd::WebDriverCompatibleCommand,
};
use futures::FutureExt as _;
use palisade_analysis::graph::{EdgeKind, Graph, html, svg};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WIDTH: u32 = 1800;
const HEIGHT: u32 = 1100;

/// The seeds' three-tier application as `palisade graph -n production
/// --live` shows it (every kind of node, a denied edge with drops, a Pass
/// chain, two rejected objects).
fn three_tier() -> Graph {
    serde_json::from_str(include_str!("data/three-tier-graph.json")).expect("a graph")
}

/// Whether to skip: Chromium or its driver is missing and `CI` is unset.
fn skip_without_chromium() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set and {missing:?} are missing: `cargo xtask setup` installs Debian's chromium and chromium-driver"
    );
    eprintln!(
        "SKIPPED html_browser: {missing:?} missing (run `cargo xtask setup`; with CI set this fails)"
    );
    true
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's own commands, which fantoccini does not wrap.
#[derive(Debug)]
enum Chromium {
    /// The browser console's entries since the last call.
    BrowserLog,
    /// Cuts the page's network off.
    Offline,
}

impl WebDriverCompatibleCommand for Chromium {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session.unwrap_or_default();
        base.join(&match self {
            Chromium::BrowserLog => format!("session/{session}/se/log"),
            Chromium::Offline => format!("session/{session}/chromium/network_conditions"),
        })
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = match self {
            Chromium::BrowserLog => json!({ "type": "browser" }),
            Chromium::Offline => json!({ "network_conditions": {
                "offline": true, "latency": 0, "download_throughput": 0, "upload_throughput": 0
            }}),
        };
        (http::Method::POST, Some(body.to_string()))
    }
}

async fn js(client: &Client, script: &str, args: Vec<Value>) -> Value {
    client
        .execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// A point (viewport pixels) where a click lands on the element `css`
/// itself, not on something drawn over it: its label's or box's centre, or
/// a point along its line.
async fn click_point(client: &Client, css: &str) -> (f64, f64) {
    let point = js(
        client,
        r#"
        const g = document.querySelector(arguments[0]);
        if (!g) return null;
        const candidates = [];
        for (const part of g.querySelectorAll('.edge-label, .box')) {
          const r = part.getBoundingClientRect();
          candidates.push([r.x + r.width / 2, r.y + r.height / 2]);
        }
        const line = g.querySelector('.line');
        if (line) {
          const length = line.getTotalLength(), m = line.getScreenCTM();
          for (const t of [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8]) {
            const p = line.getPointAtLength(length * t);
            candidates.push([m.a * p.x + m.c * p.y + m.e, m.b * p.x + m.d * p.y + m.f]);
          }
        }
        // Whole pixels, with a margin: the pointer lands on whole pixels.
        const inside = (x, y) => { const hit = document.elementFromPoint(x, y); return hit && g.contains(hit); };
        for (const [cx, cy] of candidates) {
          const x = Math.round(cx), y = Math.round(cy);
          if ([[0, 0], [2, 0], [-2, 0], [0, 2], [0, -2]].every(([dx, dy]) => inside(x + dx, y + dy))) return [x, y];
        }
        return null;
        "#,
        vec![json!(css)],
    )
    .await;
    let p = point
        .as_array()
        .unwrap_or_else(|| panic!("nowhere to click {css}: {point}"));
    (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())
}

/// A real click (pointer moves there, presses, releases).
async fn click_at(client: &Client, (x, y): (f64, f64)) {
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x: x.round(),
            y: y.round(),
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(mouse).await.expect("click");
    client.release_actions().await.expect("release");
}

/// The details panel: whether shown, title, and the texts of `css` in it.
async fn panel(client: &Client, css: &str) -> (bool, String, Vec<String>) {
    let v = js(
        client,
        r#"
        const panel = document.getElementById('details');
        return [!panel.hidden && panel.offsetWidth > 0,
                document.getElementById('details-title').textContent,
                Array.from(panel.querySelectorAll(arguments[0])).map(e => e.textContent)];
        "#,
        vec![json!(css)],
    )
    .await;
    let texts = v[2]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    (
        v[0].as_bool().unwrap(),
        v[1].as_str().unwrap().to_string(),
        texts,
    )
}

/// The viewport's transform: (x, y, scale).
async fn transform(client: &Client) -> (f64, f64, f64) {
    let t = js(
        client,
        "return document.getElementById('pg-viewport').getAttribute('transform');",
        vec![],
    )
    .await;
    let t = t.as_str().unwrap();
    let numbers: Vec<f64> = t
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 3, "translate(x,y) scale(k) expected: {t}");
    (numbers[0], numbers[1], numbers[2])
}

async fn console(client: &Client) -> Vec<(String, String)> {
    let log = client
        .issue_cmd(Chromium::BrowserLog)
        .await
        .expect("chromedriver's browser log");
    log.as_array()
        .expect("log entries")
        .iter()
        .map(|e| {
            (
                e["level"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn checks(client: &Client, graph: &Graph, page: &Path, screenshot: &Path) {
    client
        .issue_cmd(Chromium::Offline)
        .await
        .expect("network cut off");
    client
        .set_window_size(WIDTH, HEIGHT)
        .await
        .expect("window size");
    client
        .goto(&format!("file://{}", page.display()))
        .await
        .expect("page opens");
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#pg-viewport .node"))
        .await
        .expect("nodes drawn");

    // The embedded JSON is the graph.
    let embedded = js(
        client,
        "return document.getElementById('graph-data').textContent;",
        vec![],
    )
    .await;
    let embedded: Graph = serde_json::from_str(embedded.as_str().unwrap()).expect("embedded JSON");
    assert_eq!(&embedded, graph);

    // Every node drawn, visible, with its name.
    let drawn = js(
        client,
        r#"return Array.from(document.querySelectorAll('#pg-viewport .node')).map(n => {
             const r = n.getBoundingClientRect();
             return [n.dataset.id, n.querySelector('.label').textContent, r.width > 0 && r.height > 0];
           });"#,
        vec![],
    )
    .await;
    let drawn = drawn.as_array().unwrap();
    assert_eq!(drawn.len(), graph.nodes.len());
    for (d, node) in drawn.iter().zip(&graph.nodes) {
        assert_eq!(d[0], node.id.as_str());
        let label = d[1].as_str().unwrap();
        let shown = match label.strip_suffix('…') {
            Some(cut) => node.label.starts_with(cut) && cut.len() > 8,
            None => label == node.label,
        };
        assert!(shown, "{} is drawn as {label:?}", node.id);
        assert_eq!(d[2], true, "{} has no size", node.id);
    }

    // Every edge drawn, with its ends and kind.
    let drawn = js(
        client,
        r#"return Array.from(document.querySelectorAll('#pg-viewport .edge[data-index]'))
             .map(e => [e.dataset.from, e.dataset.to, e.dataset.kind,
                        e.querySelector('.line').getTotalLength() > 0]);"#,
        vec![],
    )
    .await;
    let drawn = drawn.as_array().unwrap();
    assert_eq!(drawn.len(), graph.edges.len());
    for (d, edge) in drawn.iter().zip(&graph.edges) {
        let kind = if edge.kind == EdgeKind::Denied {
            "denied"
        } else {
            "allowed"
        };
        assert_eq!(d[0], edge.from.as_str());
        assert_eq!(d[1], edge.to.as_str());
        assert_eq!(d[2], kind);
        assert_eq!(d[3], true, "{} → {} has no line", edge.from, edge.to);
    }
    let banner = js(
        client,
        "const b = document.querySelector('.pg-banner'); return b ? b.textContent : null;",
        vec![],
    )
    .await;
    assert!(
        banner
            .as_str()
            .is_some_and(|b| b.contains("Partial picture: 2 objects rejected")),
        "{banner}"
    );

    // Clicking an edge shows its rules, with the Pass chain, and its ports.
    let (k, edge) = graph
        .edges
        .iter()
        .enumerate()
        .find(|(_, e)| e.rules.iter().any(|r| !r.passed.is_empty()))
        .expect("an edge with a Pass chain");
    let css = format!("#pg-viewport .edge[data-index=\"{k}\"]");
    click_at(client, click_point(client, &css).await).await;
    let (shown, title, rules) = panel(client, ".rule .name").await;
    assert!(shown, "the panel opens");
    assert_eq!(title, "frontend → backend");
    let names: Vec<&str> = edge.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rules, names);
    let (_, _, passed) = panel(client, ".rule .passed").await;
    assert_eq!(passed, [format!("passed by {}", edge.rules[0].passed[0])]);
    let (_, _, ports) = panel(client, ".port").await;
    assert_eq!(ports, ["TCP 8080"]);
    // The live overlay: in use, its drops and their causes.
    let (_, _, status) = panel(client, ".pill, .drops").await;
    assert_eq!(status, ["allowed", "in use", "2 drops in the last 5 min"]);
    let (_, _, causes) = panel(client, ".cause").await;
    assert_eq!(causes, ["policy-revoked: 2"]);
    let (_, _, meta) = panel(client, ".rule .meta").await;
    assert_eq!(
        meta,
        ["egress · network-policy", "ingress · network-policy"]
    );

    // The denied edge: its drops.
    let k = graph
        .edges
        .iter()
        .position(|e| e.kind == EdgeKind::Denied)
        .unwrap();
    let css = format!("#pg-viewport .edge[data-index=\"{k}\"]");
    click_at(client, click_point(client, &css).await).await;
    let (_, title, status) = panel(client, ".pill, .drops").await;
    assert_eq!(title, "test-pod → database");
    assert_eq!(status, ["denied, attempted", "37 drops in the last 5 min"]);
    let (_, _, causes) = panel(client, ".cause").await;
    assert_eq!(causes, ["policy-denied: 37"]);

    // Clicking a node shows its pods, labels and isolation.
    let node = graph
        .nodes
        .iter()
        .find(|n| n.id == "workload:production/frontend")
        .unwrap();
    let css = "#pg-viewport .node[data-id=\"workload:production/frontend\"]";
    click_at(client, click_point(client, css).await).await;
    let (shown, title, pods) = panel(client, ".pod").await;
    assert!(shown);
    assert_eq!(title, "frontend");
    assert_eq!(pods, node.pods);
    let (_, _, labels) = panel(client, ".label").await;
    assert_eq!(labels, node.labels);
    let (_, _, isolation) = panel(client, ".isolation .pill").await;
    assert_eq!(isolation, ["isolated", "isolated"]);

    // The keyboard: Enter on a focused node shows it, Escape closes.
    js(
        client,
        "document.querySelector('#pg-viewport .node[data-id=\"workload:production/database\"]').focus();",
        vec![],
    )
    .await;
    let enter = KeyActions::new("keyboard".into())
        .then(KeyAction::Down {
            value: Key::Enter.into(),
        })
        .then(KeyAction::Up {
            value: Key::Enter.into(),
        });
    client.perform_actions(enter).await.expect("Enter");
    let (shown, title, pods) = panel(client, ".pod").await;
    assert!(shown && title == "database", "{title}");
    assert_eq!(pods, ["production/database"]);
    let escape = KeyActions::new("keyboard".into())
        .then(KeyAction::Down {
            value: Key::Escape.into(),
        })
        .then(KeyAction::Up {
            value: Key::Escape.into(),
        });
    client.perform_actions(escape).await.expect("Escape");
    let (shown, _, _) = panel(client, ".pod").await;
    assert!(!shown, "Escape closes the panel");
    let css = "#pg-viewport .node[data-id=\"workload:production/frontend\"]";
    click_at(client, click_point(client, css).await).await;

    // Zoom: the buttons and the wheel change the scale; a drag pans.
    let before = transform(client).await;
    client
        .find(Locator::Id("zoom-in"))
        .await
        .expect("zoom-in button")
        .click()
        .await
        .expect("click zoom-in");
    let zoomed = transform(client).await;
    assert!(
        (zoomed.2 / before.2 - 1.25).abs() < 0.01,
        "{before:?} → {zoomed:?}"
    );
    let wheel = WheelActions::new("wheel".into()).then(WheelAction::Scroll {
        duration: None,
        x: (WIDTH / 3) as i64,
        y: (HEIGHT / 2) as i64,
        delta_x: 0,
        delta_y: 400,
    });
    client.perform_actions(wheel).await.expect("wheel");
    let wheeled = transform(client).await;
    assert!(wheeled.2 < zoomed.2 * 0.7, "{zoomed:?} → {wheeled:?}");
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x: (WIDTH / 2) as f64,
            y: 20.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(100)),
            x: 120.0,
            y: 80.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(drag).await.expect("drag");
    client.release_actions().await.expect("release");
    let panned = transform(client).await;
    assert!(
        (panned.0 - wheeled.0 - 120.0).abs() < 1.5 && (panned.1 - wheeled.1 - 80.0).abs() < 1.5,
        "{wheeled:?} → {panned:?}"
    );
    assert_eq!(panned.2, wheeled.2, "a drag does not zoom");
    let (shown, title, _) = panel(client, ".pod").await;
    assert!(shown && title == "frontend", "a drag is not a click");

    // The edge with the Pass chain again, fitted: the screenshot's view.
    client
        .find(Locator::Id("zoom-fit"))
        .await
        .expect("fit button")
        .click()
        .await
        .expect("click fit");
    let (k, _) = graph
        .edges
        .iter()
        .enumerate()
        .find(|(_, e)| e.rules.iter().any(|r| !r.passed.is_empty()))
        .unwrap();
    let css = format!("#pg-viewport .edge[data-index=\"{k}\"]");
    click_at(client, click_point(client, &css).await).await;

    // Nothing fetched, no console errors (and the log does report them).
    let fetched = js(
        client,
        "return performance.getEntriesByType('resource').map(e => e.name);",
        vec![],
    )
    .await;
    assert_eq!(fetched, json!([]), "the page fetched something");
    let errors: Vec<(String, String)> = console(client)
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(errors.is_empty(), "console: {errors:?}");
    js(client, "console.error('palisade-probe');", vec![]).await;
    let probe = console(client).await;
    assert!(
        probe
            .iter()
            .any(|(l, m)| l == "SEVERE" && m.contains("palisade-probe")),
        "the browser log does not report errors: {probe:?}"
    );

    // The screenshot shows the drawing: many colours, ink on the white, the
    // denied edge's red, the workloads' blue.
    let png_bytes = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot, &png_bytes).expect("screenshot saved");
    let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels = &pixels[..info.buffer_size()];
    let rgb = || pixels.chunks_exact(channels).map(|p| (p[0], p[1], p[2]));
    let colours: std::collections::HashSet<(u8, u8, u8)> = rgb().collect();
    let total = rgb().count();
    let ink = rgb()
        .filter(|&(r, g, b)| r < 235 || g < 235 || b < 235)
        .count();
    let near = |(r, g, b): (u8, u8, u8), (tr, tg, tb): (u8, u8, u8)| {
        r.abs_diff(tr) < 24 && g.abs_diff(tg) < 24 && b.abs_diff(tb) < 24
    };
    let red = rgb().filter(|&p| near(p, (0xdc, 0x26, 0x26))).count();
    let blue = rgb().filter(|&p| near(p, (0x3b, 0x82, 0xf6))).count();
    eprintln!(
        "screenshot {}: {}x{}, {} colours, {:.1}% ink, {red} red and {blue} blue pixels",
        screenshot.display(),
        info.width,
        info.height,
        colours.len(),
        100.0 * ink as f64 / total as f64
    );
    assert!(colours.len() > 50, "{} colours", colours.len());
    assert!(ink * 50 > total, "{ink} of {total} pixels are not white");
    assert!(red > 15 && blue > 60, "red {red}, blue {blue}");
}

#[tokio::test]
async fn the_page_works_in_a_real_browser() {
    if skip_without_chromium() {
        return;
    }
    let started = Instant::now();
    let graph = three_tier();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let page = dir.path().join("graph.html");
    std::fs::write(&page, html::render(&graph)).expect("page written");
    let profile = dir.path().join("profile");
    // Kept for people to look at: the screenshot, the page and the SVG.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let screenshot = keep.join("html_browser.png");
    std::fs::copy(&page, keep.join("html_browser.html")).expect("page kept");
    std::fs::write(keep.join("html_browser.svg"), svg::render(&graph)).expect("svg kept");

    let driver = Driver::start();
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                // No name resolves and no proxy answers: nothing leaves.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--proxy-server=127.0.0.1:9",
                format!("--window-size={WIDTH},{HEIGHT}"),
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with Chromium");

    // Whatever happens, the browser is closed before the verdict.
    let outcome = AssertUnwindSafe(checks(&client, &graph, &page, &screenshot))
        .catch_unwind()
        .await;
    let closed = client.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    closed.expect("the browser closes");
    eprintln!("html_browser: {:.1} s", started.elapsed().as_secs_f64());
}
