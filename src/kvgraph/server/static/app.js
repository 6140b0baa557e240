// The page: tabs, and the knowledge base's status line. Each tab lives in its own module.
import { api } from "./api.js";
import { initChat } from "./chat.js";
import { initDocuments } from "./documents.js";
import { initEval } from "./eval.js";
import { initGraph, showGraph } from "./graph.js";
import { initSearch } from "./search.js";

const tabs = {};

export function openTab(name) {
  for (const button of document.querySelectorAll("nav [data-tab]")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== `tab-${name}`;
  tabs[name]?.onShow?.();
}

export async function refreshStatus() {
  const status = document.getElementById("kb-status");
  try {
    const s = await api("/api/stats");
    status.textContent = `${s.files} files · ${s.chunks} chunks · ${s.embedding_model || s.embedder}${s.llm ? " · LLM" : " · offline"}`;
  } catch (err) {
    status.textContent = err.message;
  }
}

for (const button of document.querySelectorAll("nav [data-tab]")) {
  button.addEventListener("click", () => openTab(button.dataset.tab));
}
for (const close of document.querySelectorAll("[data-close]")) {
  close.addEventListener("click", () => (document.getElementById(close.dataset.close).hidden = true));
}

tabs.chat = initChat();
tabs.documents = initDocuments({ onChange: refreshStatus });
tabs.search = initSearch({
  onPath: (graph, title) => {
    openTab("graph");
    showGraph(graph, { title, source: "docgraph" });
  },
});
tabs.graph = initGraph();
tabs.eval = initEval();
openTab(location.hash.slice(1) in tabs ? location.hash.slice(1) : "chat");
refreshStatus();
document.body.dataset.ready = "true";
