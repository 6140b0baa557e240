// Evaluation: start a run (questions with gold files or chunk ids, modes to compare) and chart the results.
import { api, el, showError } from "./api.js";

const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626"];
const METRICS = ["hit_rate", "mrr", "recall", "ndcg"];
const EXAMPLE = [{ question: "How often should solar panels be cleaned?", relevant_files: ["solar.md"] }];

export function initEval() {
  const form = document.getElementById("eval-form");
  const runs = document.getElementById("eval-runs");
  const textarea = document.getElementById("eval-questions");
  textarea.value = JSON.stringify(EXAMPLE, null, 1);

  async function load() {
    try {
      const list = await api("/api/eval/runs");
      runs.replaceChildren(...list.map(renderRun));
      if (list.some((r) => r.state === "queued" || r.state === "running")) setTimeout(load, 700);
    } catch (err) {
      showError(runs, err);
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const questions = JSON.parse(textarea.value);
      const modes = [...form.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
      await api("/api/eval/runs", { method: "POST", body: { questions, modes, ks: [1, 3, 5] } });
      await load();
    } catch (err) {
      showError(runs, err);
    }
  });

  return { onShow: load };
}

function renderRun(run) {
  const head = el("h3", {}, `${run.name} `, el("span", { class: "muted" }, `${run.state} · ${run.created_at}`));
  const box = el("div", { class: "run", "data-testid": "eval-run" }, head);
  if (run.state === "failed") box.append(el("p", { class: "error" }, run.error));
  if (run.state !== "done" || !run.results) return box;
  const { ks, modes } = run.results;
  const names = Object.keys(modes);
  if (names.length) {
    const keys = METRICS.flatMap((m) => ks.map((k) => `${m}@${k}`));
    box.append(chart(keys, names, (mode, key) => modes[mode].means[key] ?? 0));
    box.append(
      el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, el("th", {}, "mode"), ...keys.map((k) => el("th", {}, k)), el("th", {}, "ms/query"))),
        el("tbody", {}, ...names.map((m) => el("tr", {}, el("td", {}, m), ...keys.map((k) => el("td", {}, (modes[m].means[k] ?? 0).toFixed(3))), el("td", {}, modes[m].ms_per_query))))),
    );
  }
  if (run.results.answers) {
    const means = run.results.answers.means;
    box.append(el("p", {}, "answers: ", Object.entries(means).map(([k, v]) => `${k} ${v === null ? "-" : v.toFixed(3)}`).join(" · ")));
  }
  return box;
}

// Grouped bars: one group per metric key, one bar per mode; values in [0, 1].
function chart(keys, modes, value) {
  const w = 60 * keys.length + 60;
  const h = 220;
  const top = 14;
  const base = h - 40;
  const bar = Math.max(4, Math.floor(48 / modes.length));
  const parts = [];
  for (let t = 0; t <= 4; t++) {
    const y = base - ((base - top) * t) / 4;
    parts.push(el("line", { x1: 36, x2: w, y1: y, y2: y, class: "gridline" }), el("text", { x: 4, y: y + 4, class: "axis" }, (t / 4).toFixed(2)));
  }
  keys.forEach((key, i) => {
    const x0 = 44 + 60 * i;
    modes.forEach((mode, j) => {
      const v = Math.max(0, Math.min(1, value(mode, key)));
      const y = base - (base - top) * v;
      parts.push(el("rect", { x: x0 + j * bar, y, width: bar - 1, height: base - y, fill: COLORS[j % COLORS.length] }, el("title", {}, `${mode} ${key}: ${v.toFixed(3)}`)));
    });
    parts.push(el("text", { x: x0, y: base + 14, class: "axis" }, key));
  });
  modes.forEach((m, j) => parts.push(el("rect", { x: 44 + 90 * j, y: h - 14, width: 10, height: 10, fill: COLORS[j % COLORS.length] }), el("text", { x: 58 + 90 * j, y: h - 5, class: "axis" }, m)));
  return el("svg", { class: "chart", "data-testid": "eval-chart", viewBox: `0 0 ${w} ${h}`, width: w, height: h }, ...parts);
}
