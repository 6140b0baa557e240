// Search: query, mode, k and a metadata filter; hits with score, source and page. A hit that the
// knowledge-vector-graph walk reached (--mode graph) shows its path and can open it in the graph view.
import { api, el, showError } from "./api.js";

export function initSearch({ onPath }) {
  const form = document.getElementById("search-form");
  const results = document.getElementById("search-results");

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {
      query: document.getElementById("search-input").value,
      k: Number(document.getElementById("search-k").value) || undefined,
    };
    const mode = document.getElementById("search-mode").value;
    const filter = document.getElementById("search-filter").value.trim();
    if (mode) body.mode = mode;
    if (filter) body.filters = filter.startsWith("{") ? JSON.parse(filter) : filter;
    results.replaceChildren(el("li", { class: "muted" }, "searching…"));
    try {
      const out = await api("/api/search", { method: "POST", body });
      if (!out.hits.length) {
        results.replaceChildren(el("li", { class: "muted" }, "no results"));
        return;
      }
      results.replaceChildren(
        ...out.hits.map((h) =>
          el(
            "li",
            { "data-testid": "search-hit" },
            el("div", { class: "hit-head" }, el("strong", {}, h.source), el("span", { class: "muted" }, ` score ${h.score.toFixed(3)}`)),
            el("p", { class: "hit-text" }, h.text.length > 600 ? `${h.text.slice(0, 600)}…` : h.text),
            h.path_text
              ? el(
                  "p",
                  { class: "path" },
                  el("span", { class: "muted" }, "path: "),
                  h.path_text,
                  " ",
                  el("button", { class: "link", "data-testid": "show-path", onclick: () => onPath(h.path_graph, h.path_text) }, "show in graph"),
                )
              : null,
          ),
        ),
      );
    } catch (err) {
      showError(results, err);
    }
  });

  return {};
}
