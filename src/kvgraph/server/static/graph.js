// Graph: read-only Cypher with parameters, results as a table and as a graph; click a node to see its
// properties and expand its neighbourhood. Also draws knowledge-vector-graph walk paths from Search.
import { api, el, showError } from "./api.js";

const W = 800;
const H = 520;
const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563", "#be185d"];
let state = { nodes: new Map(), edges: new Map(), source: "cypher" };

export function initGraph() {
  const form = document.getElementById("graph-form");
  const table = document.getElementById("graph-table");
  const note = document.getElementById("graph-note");

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const cypher = document.getElementById("cypher").value;
    const raw = document.getElementById("cypher-params").value.trim();
    try {
      const params = raw ? JSON.parse(raw) : {};
      const out = await api("/api/graph/query", { method: "POST", body: { cypher, params } });
      renderTable(table, out.columns, out.rows);
      note.textContent = `${out.rows.length} rows${out.truncated ? " (truncated)" : ""} · ${out.graph.nodes.length} nodes, ${out.graph.edges.length} relationships`;
      showGraph(out.graph, { source: "cypher" });
    } catch (err) {
      showError(note, err);
    }
  });

  document.getElementById("schema-button").addEventListener("click", async () => {
    try {
      const s = await api("/api/graph/schema");
      document.getElementById("graph-side").replaceChildren(el("pre", { "data-testid": "graph-schema" }, s.text));
    } catch (err) {
      showError(note, err);
    }
  });
  return {};
}

function renderTable(table, columns, rows) {
  const cell = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v));
  table.replaceChildren(
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, ...rows.slice(0, 200).map((r) => el("tr", { "data-testid": "graph-row" }, ...r.map((v) => el("td", {}, cell(v)))))),
  );
}

// Replace (or with ``merge``, extend) the drawn graph: {nodes: [{id, label, name, ...}], edges: [{source, target, type}]}.
export function showGraph(graph, { title, source = "cypher", merge = false } = {}) {
  if (!merge) state = { nodes: new Map(), edges: new Map(), source };
  for (const n of graph.nodes) if (!state.nodes.has(n.id)) state.nodes.set(n.id, { ...n });
  for (const e of graph.edges) state.edges.set(`${e.source}|${e.type}|${e.target}`, e);
  if (title) document.getElementById("graph-note").textContent = title;
  layout();
  draw();
}

function layout() {
  // Fruchterman-Reingold: nodes repel, edges pull, the step shrinks as the layout cools.
  const nodes = [...state.nodes.values()];
  const index = new Map(nodes.map((n, i) => [n.id, i]));
  nodes.forEach((n, i) => {
    if (n.x === undefined) {
      const a = 2.399963 * i; // golden angle: an even spiral, no two nodes on one spot
      const r = 12 * Math.sqrt(i + 1);
      n.x = W / 2 + r * Math.cos(a);
      n.y = H / 2 + r * Math.sin(a);
    }
  });
  const links = [...state.edges.values()]
    .map((e) => [index.get(e.source), index.get(e.target)])
    .filter(([a, b]) => a !== undefined && b !== undefined && a !== b);
  const k = Math.min(120, Math.sqrt((W * H) / Math.max(nodes.length, 1)) * 0.75);
  const steps = 300;
  for (let step = 0; step < steps; step++) {
    const t = (W / 8) * (1 - step / steps) + 1;
    const dx = new Float64Array(nodes.length);
    const dy = new Float64Array(nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      for (let j = i + 1; j < nodes.length; j++) {
        const x = nodes[i].x - nodes[j].x;
        const y = nodes[i].y - nodes[j].y;
        const d = Math.max(Math.sqrt(x * x + y * y), 0.5);
        const f = (k * k) / d / d;
        dx[i] += x * f; dy[i] += y * f;
        dx[j] -= x * f; dy[j] -= y * f;
      }
    }
    for (const [a, b] of links) {
      const x = nodes[a].x - nodes[b].x;
      const y = nodes[a].y - nodes[b].y;
      const d = Math.max(Math.sqrt(x * x + y * y), 0.5);
      const f = d / k;
      dx[a] -= x * f; dy[a] -= y * f;
      dx[b] += x * f; dy[b] += y * f;
    }
    nodes.forEach((n, i) => {
      // gravity keeps separate components near each other instead of drifting apart
      const gx = W / 2 - n.x;
      const gy = H / 2 - n.y;
      const g = Math.sqrt(gx * gx + gy * gy) / k;
      dx[i] += gx * g;
      dy[i] += gy * g;
      const d = Math.sqrt(dx[i] * dx[i] + dy[i] * dy[i]) || 1;
      n.x += (dx[i] / d) * Math.min(d, t);
      n.y += (dy[i] / d) * Math.min(d, t);
    });
  }
  // Fit the drawing into the view (labels run to the right of their node).
  const xs = nodes.map((n) => n.x);
  const ys = nodes.map((n) => n.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const scale = Math.min((W - 160) / Math.max(x1 - x0, 1), (H - 50) / Math.max(y1 - y0, 1), 1.5);
  for (const n of nodes) {
    n.x = 30 + (n.x - x0) * scale + ((W - 160) - (x1 - x0) * scale) / 2;
    n.y = 25 + (n.y - y0) * scale + ((H - 50) - (y1 - y0) * scale) / 2;
  }
}

function draw() {
  const svg = document.getElementById("graph-view");
  const labels = [...new Set([...state.nodes.values()].map((n) => n.label))];
  const color = (label) => COLORS[labels.indexOf(label) % COLORS.length];
  const edges = [...state.edges.values()].flatMap((e) => {
    const a = state.nodes.get(e.source);
    const b = state.nodes.get(e.target);
    if (!a || !b) return [];
    return [
      el("g", { class: "edge" },
        el("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y }),
        e.type ? el("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 3, class: "edge-label" }, e.type) : null),
    ];
  });
  const nodes = [...state.nodes.values()].map((n) =>
    el("g", { class: "node", "data-testid": "graph-node", "data-id": n.id, transform: `translate(${n.x},${n.y})`, onclick: () => select(n) },
      el("title", {}, `${n.label}: ${n.name}`),
      el("circle", { r: 9, fill: color(n.label) }),
      el("text", { x: 12, y: 4 }, n.name.length > 28 ? `${n.name.slice(0, 27)}…` : n.name)),
  );
  const legend = labels.map((l, i) => el("g", { transform: `translate(10,${16 + 16 * i})` }, el("circle", { r: 5, fill: color(l) }), el("text", { x: 10, y: 4, class: "legend" }, l)));
  svg.replaceChildren(el("g", {}, ...edges), el("g", {}, ...nodes), el("g", {}, ...legend));
}

function select(n) {
  const side = document.getElementById("graph-side");
  const props = Object.entries(n.properties || {});
  side.replaceChildren(
    el("h3", { "data-testid": "node-title" }, n.name),
    el("p", { class: "muted" }, `${n.label} · ${n.id}`),
    el("dl", {}, ...props.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))])),
    el("button", { "data-testid": "expand-node", onclick: () => expand(n) }, "Expand neighbourhood"),
  );
}

async function expand(n) {
  const note = document.getElementById("graph-note");
  try {
    const out = await api(`/api/graph/neighbourhood?key=${encodeURIComponent(n.id)}&source=${state.source}&limit=40`);
    showGraph(out, { merge: true, source: state.source });
    note.textContent = `${n.name}: ${out.edges.length} relationships${out.truncated ? " (more not shown)" : ""}`;
  } catch (err) {
    showError(note, err);
  }
}
