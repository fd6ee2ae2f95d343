//! `palisade graph -o html`: one self-contained HTML page of a [`Graph`]:
//! the SVG drawing of [`super::svg`] inline, inline CSS and a small inline
//! script (no fetches, no CDN: the page works offline and its Content
//! Security Policy forbids loading anything), with pan (drag), zoom (wheel
//! and buttons), and a side panel that shows what was clicked: an edge's
//! ports, drops (with `--live`: counts by cause, in use or not) and every
//! rule behind it (direction, tier, name, Pass
//! chain), a node's isolation, pods and labels. Nodes and edges are
//! reachable with Tab too (Enter shows one, Escape closes the panel).
//!
//! The graph's JSON (`-o json`) is embedded in a
//! `<script type="application/json" id="graph-data">` element: the panel
//! reads it, and so can tests and users.

use super::model::Graph;
use super::svg::{self, Fit, escape};

const STYLE: &str = r#"
*{box-sizing:border-box}
html,body{margin:0;height:100%;overflow:hidden;background:#ffffff;color:#0f172a;
  font-family:Inter,'Segoe UI','Helvetica Neue','DejaVu Sans','Liberation Sans',Arial,sans-serif}
#canvas{position:absolute;inset:0;touch-action:none;user-select:none}
#canvas svg{display:block;cursor:grab}
#canvas svg.panning{cursor:grabbing}
.node.selected .box{stroke-width:3;stroke:#0f172a}
.edge.selected .line{stroke-width:3.2}
.edge-allowed.selected .line{stroke:#2563eb}
.edge:hover .line{stroke-width:2.6}
.node:hover .box{stroke-width:2.4}
.node:focus,.edge:focus{outline:none}
.node:focus-visible .box{stroke:#0f172a;stroke-width:2.6}
.edge:focus-visible .line{stroke-width:3}
#controls{position:absolute;left:16px;bottom:16px;display:flex;gap:6px;align-items:center}
#controls button{font:inherit;font-size:15px;min-width:34px;height:32px;border:1px solid #cbd5e1;
  border-radius:8px;background:#ffffff;color:#0f172a;cursor:pointer;box-shadow:0 1px 2px rgba(15,23,42,.08)}
#controls button:hover{background:#f1f5f9}
#controls .hint{margin-left:8px;font-size:12px;color:#64748b}
#details{position:absolute;top:0;right:0;bottom:0;width:360px;overflow:auto;background:#ffffff;
  border-left:1px solid #e2e8f0;box-shadow:-6px 0 18px rgba(15,23,42,.08);padding:20px 22px 28px}
#details[hidden]{display:none}
#details-close{position:absolute;top:12px;right:12px;border:0;background:none;font-size:22px;
  line-height:1;color:#64748b;cursor:pointer}
#details h2{margin:0 28px 2px 0;font-size:18px;word-break:break-word}
#details .kind{font-size:12px;color:#64748b;margin-bottom:14px;word-break:break-all}
#details h3{font-size:11px;letter-spacing:.08em;text-transform:uppercase;color:#64748b;margin:18px 0 6px}
#details ul{margin:0;padding:0;list-style:none}
#details li{padding:5px 0;border-bottom:1px solid #f1f5f9;font-size:13px;word-break:break-word}
#details .pill{display:inline-block;padding:2px 8px;border-radius:999px;font-size:12px;font-weight:600;margin-right:6px}
#details .pill.allowed{background:#e2e8f0;color:#334155}
#details .pill.denied{background:#fee2e2;color:#b91c1c}
#details .pill.isolated{background:#dcfce7;color:#166534}
#details .pill.partly{background:#fef3c7;color:#92400e}
#details .pill.open{background:#f1f5f9;color:#475569}
#details .label{display:inline-block;background:#eff6ff;color:#1e40af;border-radius:6px;padding:2px 7px;
  margin:0 4px 4px 0;font-size:12px;font-family:ui-monospace,'DejaVu Sans Mono',monospace}
#details .rule .meta{font-size:11px;color:#64748b;text-transform:uppercase;letter-spacing:.05em}
#details .rule .name{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12.5px}
#details .rule .passed{font-size:12px;color:#92400e;margin-top:3px}
#details .drops{color:#b91c1c;font-weight:600;font-size:13px}
#details .pill.used{background:#dbeafe;color:#1e40af}
#details .pill.unused{background:#f1f5f9;color:#94a3b8}
#details .quiet{color:#64748b;font-size:13px}
#details .none{color:#64748b;font-size:13px}
"#;

/// The page's behaviour: fit, pan, zoom, and the details panel. Text from
/// the graph is only ever set as `textContent`, never parsed as markup.
const SCRIPT: &str = r#"
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('graph-data').textContent);
  var svg = document.querySelector('#canvas svg');
  var viewport = document.getElementById('pg-viewport');
  var panel = document.getElementById('details');
  var graphW = Number(viewport.dataset.width), graphH = Number(viewport.dataset.height);
  var top = Number(viewport.dataset.top);
  var nodes = new Map(data.nodes.map(function (n) { return [n.id, n]; }));
  var view = { x: 0, y: 0, k: 1 };

  function apply() {
    viewport.setAttribute('transform',
      'translate(' + view.x.toFixed(1) + ',' + view.y.toFixed(1) + ') scale(' + view.k.toFixed(4) + ')');
  }
  function fit() {
    var r = svg.getBoundingClientRect();
    var w = r.width - (panel.hidden ? 0 : panel.offsetWidth) - 48, h = r.height - top - 64;
    var k = Math.max(0.05, Math.min(w / graphW, h / graphH, 1.25));
    view = { k: k, x: 24 + (w - graphW * k) / 2, y: top + 8 + Math.max(0, (h - graphH * k) / 2) };
    apply();
  }
  function zoomAt(px, py, factor) {
    var k = Math.min(8, Math.max(0.05, view.k * factor)), f = k / view.k;
    view = { k: k, x: px - (px - view.x) * f, y: py - (py - view.y) * f };
    apply();
  }
  function zoomCentre(factor) {
    var r = svg.getBoundingClientRect();
    zoomAt(r.width / 2, (r.height + top) / 2, factor);
  }
  svg.addEventListener('wheel', function (e) {
    e.preventDefault();
    var r = svg.getBoundingClientRect();
    zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * 0.0015));
  }, { passive: false });
  document.getElementById('zoom-in').addEventListener('click', function () { zoomCentre(1.25); });
  document.getElementById('zoom-out').addEventListener('click', function () { zoomCentre(0.8); });
  document.getElementById('zoom-fit').addEventListener('click', fit);

  // Pan: a drag of more than a few pixels; a click otherwise.
  var drag = null, dragged = false;
  svg.addEventListener('pointerdown', function (e) {
    if (e.button !== 0) return;
    drag = { id: e.pointerId, x0: e.clientX, y0: e.clientY, vx: view.x, vy: view.y, moved: false };
  });
  svg.addEventListener('pointermove', function (e) {
    if (!drag || e.pointerId !== drag.id) return;
    var dx = e.clientX - drag.x0, dy = e.clientY - drag.y0;
    if (!drag.moved && Math.hypot(dx, dy) > 4) {
      drag.moved = true;
      svg.setPointerCapture(drag.id);
      svg.classList.add('panning');
    }
    if (drag.moved) { view.x = drag.vx + dx; view.y = drag.vy + dy; apply(); }
  });
  function endDrag() {
    if (drag && drag.moved) { dragged = true; svg.classList.remove('panning'); }
    drag = null;
  }
  svg.addEventListener('pointerup', endDrag);
  svg.addEventListener('pointercancel', endDrag);

  // The details panel.
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function section(body, title, items, empty) {
    body.appendChild(el('h3', '', title));
    if (!items.length) { body.appendChild(el('div', 'none', empty)); return; }
    var ul = el('ul');
    items.forEach(function (item) { ul.appendChild(item); });
    body.appendChild(ul);
  }
  function label(id) { var n = nodes.get(id); return n ? n.label : id; }
  function isolation(dir, value) {
    var names = { isolated: 'isolated', partly: 'partly isolated', open: 'not isolated' };
    var li = el('li', 'isolation ' + dir);
    li.appendChild(el('span', 'pill ' + value, names[value] || value));
    li.appendChild(document.createTextNode(dir === 'ingress'
      ? 'for traffic it receives (ingress)' : 'for traffic it sends (egress)'));
    return li;
  }
  function windowText() {
    var w = data.window_seconds;
    if (!w) return '';
    return ' in the last ' + (w % 3600 === 0 ? w / 3600 + ' h' : w % 60 === 0 ? w / 60 + ' min' : w + ' s');
  }
  function drops(n) {
    return n + (n === 1 ? ' drop' : ' drops') + windowText();
  }
  function open(title, kind) {
    document.getElementById('details-title').textContent = title;
    document.getElementById('details-kind').textContent = kind;
    var body = document.getElementById('details-body');
    body.replaceChildren();
    panel.hidden = false;
    return body;
  }
  function showNode(node) {
    var kinds = { workload: 'workload', namespace: 'namespace', cidr: 'CIDR region', host: 'host', world: 'world' };
    var body = open(node.label, (kinds[node.kind] || node.kind) + (node.namespace ? ' in ' + node.namespace : '') + ' · ' + node.id);
    if (node.ingress !== 'not-applicable' || node.egress !== 'not-applicable') {
      section(body, 'Isolation', [isolation('ingress', node.ingress), isolation('egress', node.egress)], '');
    }
    if (node.kind === 'workload' || node.kind === 'namespace') {
      section(body, 'Pods (' + (node.pods || []).length + ')',
        (node.pods || []).map(function (p) { return el('li', 'pod', p); }), 'No pods.');
      body.appendChild(el('h3', '', 'Labels'));
      var labels = el('div', 'labels');
      (node.labels || []).forEach(function (l) { labels.appendChild(el('span', 'label', l)); });
      if (!(node.labels || []).length) labels.appendChild(el('div', 'none', 'No shared labels.'));
      body.appendChild(labels);
    }
    var peers = function (pick, other) {
      return data.edges.filter(pick).map(function (e) {
        var li = el('li', 'peer ' + e.kind, label(other(e)));
        if (e.kind === 'denied') li.appendChild(el('span', 'drops', ' · denied' + (e.drops ? ', ' + drops(e.drops) : '')));
        else if (e.drops) li.appendChild(el('span', 'drops', ' · ' + drops(e.drops)));
        if (e.used === false) li.appendChild(el('span', 'quiet', ' · unused'));
        return li;
      });
    };
    section(body, 'Receives from', peers(function (e) { return e.to === node.id; }, function (e) { return e.from; }), 'Nothing.');
    section(body, 'Sends to', peers(function (e) { return e.from === node.id; }, function (e) { return e.to; }), 'Nothing.');
  }
  function showEdge(edge, g) {
    var body = open(label(edge.from) + ' → ' + label(edge.to), edge.from + ' → ' + edge.to);
    var status = el('div');
    status.appendChild(el('span', 'pill ' + edge.kind, edge.kind === 'denied' ? 'denied, attempted' : 'allowed'));
    if (edge.used === true) status.appendChild(el('span', 'pill used', 'in use'));
    if (edge.used === false) status.appendChild(el('span', 'pill unused', 'unused'));
    if (edge.drops !== undefined && edge.drops !== null) status.appendChild(el('span', 'drops', drops(edge.drops)));
    else if (data.window_seconds) status.appendChild(el('span', 'quiet', 'no drops' + windowText()));
    body.appendChild(status);
    var causes = Object.keys(edge.causes || {});
    if (causes.length) {
      section(body, 'Drops by cause', causes.map(function (c) {
        return el('li', 'cause', c + ': ' + edge.causes[c]);
      }), '');
    }
    if ((data.overlay_partial || []).length) {
      section(body, 'Live overlay is partial', data.overlay_partial.map(function (p) {
        return el('li', 'partial', p);
      }), '');
    }
    var ports = (g.dataset.ports || '').split(', ').filter(Boolean);
    section(body, edge.kind === 'denied' ? 'Ports seen dropped' : 'Ports',
      ports.map(function (p) { return el('li', 'port', p); }), 'None.');
    section(body, 'Rules', edge.rules.map(function (r) {
      var li = el('li', 'rule');
      li.appendChild(el('div', 'meta', r.direction + ' · ' + r.tier));
      li.appendChild(el('div', 'name', r.name));
      (r.passed || []).forEach(function (p) { li.appendChild(el('div', 'passed', 'passed by ' + p)); });
      return li;
    }), edge.kind === 'denied' ? 'No rule allows it: policy isolates an end and nothing matches.' : 'None.');
  }
  function select(g) {
    document.querySelectorAll('.selected').forEach(function (s) { s.classList.remove('selected'); });
    if (g) g.classList.add('selected');
  }
  function show(g) {
    select(g);
    if (g.classList.contains('node')) {
      var node = nodes.get(g.dataset.id);
      if (node) showNode(node);
    } else {
      var edge = data.edges[Number(g.dataset.index)];
      if (edge) showEdge(edge, g);
    }
  }
  var clickable = '#pg-viewport .node, #pg-viewport .edge';
  svg.addEventListener('click', function (e) {
    if (dragged) { dragged = false; return; }
    var g = e.target.closest(clickable);
    if (g) show(g);
  });
  // The keyboard: Tab through nodes and edges, Enter or Space to show one,
  // Escape to close the panel.
  document.querySelectorAll(clickable).forEach(function (g) { g.setAttribute('tabindex', '0'); });
  svg.addEventListener('keydown', function (e) {
    var g = e.target.closest && e.target.closest(clickable);
    if (g && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); show(g); }
  });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') { panel.hidden = true; select(null); }
  });
  document.getElementById('details-close').addEventListener('click', function () {
    panel.hidden = true;
    select(null);
  });
  window.addEventListener('resize', fit);
  fit();
})();
"#;

/// Renders the graph as one self-contained HTML page.
pub fn render(graph: &Graph) -> String {
    let json = serde_json::to_string(graph).expect("a graph is plain data");
    let mut page = String::with_capacity(json.len() * 2 + 32 * 1024);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n",
    );
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str(&format!(
        "<title>Palisade graph: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&graph.scope)
    ));
    page.push_str("<main id=\"canvas\">\n");
    page.push_str(&svg::draw(graph, Fit::Container));
    page.push_str("</main>\n");
    page.push_str(concat!(
        "<div id=\"controls\">",
        "<button id=\"zoom-in\" type=\"button\" title=\"Zoom in\" aria-label=\"Zoom in\">+</button>",
        "<button id=\"zoom-out\" type=\"button\" title=\"Zoom out\" aria-label=\"Zoom out\">−</button>",
        "<button id=\"zoom-fit\" type=\"button\" title=\"Fit to the window\">Fit</button>",
        "<span class=\"hint\">drag to pan · wheel to zoom · click a node or an edge for details</span>",
        "</div>\n",
        "<aside id=\"details\" hidden>",
        "<button id=\"details-close\" type=\"button\" aria-label=\"Close\">×</button>",
        "<h2 id=\"details-title\"></h2><div id=\"details-kind\" class=\"kind\"></div>",
        "<div id=\"details-body\"></div></aside>\n",
    ));
    page.push_str("<script type=\"application/json\" id=\"graph-data\">");
    page.push_str(&script_safe(&json));
    page.push_str("</script>\n<script>");
    page.push_str(SCRIPT);
    page.push_str("</script>\n</body>\n</html>\n");
    page
}

/// JSON that cannot end its `<script>` element early: `<`, `>` and `&`
/// only occur inside JSON strings, where their `\u` escapes mean the same;
/// U+2028 and U+2029 are escaped too.
fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::fixtures;

    /// The embedded JSON, as the page's script reads it.
    fn embedded(page: &str) -> Graph {
        let start = page
            .find("<script type=\"application/json\" id=\"graph-data\">")
            .expect("the data element")
            + "<script type=\"application/json\" id=\"graph-data\">".len();
        let end = start + page[start..].find("</script>").expect("its end");
        serde_json::from_str(&page[start..end]).expect("valid JSON")
    }

    #[test]
    fn the_page_embeds_the_graph_and_the_drawing() {
        let graph = fixtures::three_tier();
        let page = render(&graph);
        assert_eq!(embedded(&page), graph);
        assert!(page.starts_with("<!DOCTYPE html>"));
        for node in &graph.nodes {
            assert!(page.contains(&format!("data-id=\"{}\"", escape(&node.id))));
        }
        assert_eq!(page.matches("data-index=").count(), graph.edges.len());
    }

    #[test]
    fn nothing_is_fetched() {
        let page = render(&fixtures::three_tier());
        for needle in [
            "src=", "http://", "https://", "@import", "url(http", "<link",
        ] {
            // The SVG namespace is an identifier, not a fetch.
            let hits = page
                .match_indices(needle)
                .filter(|(i, _)| !page[*i..].starts_with("http://www.w3.org/2000/svg"))
                .count();
            assert_eq!(hits, 0, "{needle} in the page");
        }
        assert!(page.contains("default-src 'none'"));
    }

    #[test]
    fn hostile_names_cannot_end_the_data_or_inject_markup() {
        let graph = fixtures::hostile();
        let page = render(&graph);
        assert_eq!(embedded(&page), graph, "the data survives intact");
        // Exactly the page's own two scripts, closed where they should be.
        assert_eq!(page.matches("<script").count(), 2);
        assert_eq!(page.matches("</script>").count(), 2);
        assert!(!page.contains("<b>x</b>"));
        assert!(script_safe("\u{2028}</script>&").is_ascii());
    }
}
