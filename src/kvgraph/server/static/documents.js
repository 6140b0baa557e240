// Documents: the ingested files; upload with progress (bytes sent, then the ingest job), delete, re-sync.
import { api, el, follow, showError, upload } from "./api.js";

export function initDocuments({ onChange }) {
  const tbody = document.getElementById("documents");
  const form = document.getElementById("upload-form");
  const input = document.getElementById("upload-input");
  const box = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const status = document.getElementById("upload-status");

  function progress(fraction, text) {
    box.hidden = false;
    bar.style.width = `${Math.round(100 * Math.max(0, Math.min(1, fraction)))}%`;
    status.textContent = text;
  }

  async function load() {
    try {
      const docs = await api("/api/documents");
      tbody.replaceChildren(
        ...docs.map((d) =>
          el(
            "tr",
            { "data-testid": "document-row", "data-name": d.name },
            el("td", { title: d.path }, d.name),
            el("td", {}, d.documents),
            el("td", {}, d.chunks),
            el("td", {}, d.tokens),
            el("td", {}, d.ingested_at),
            el("td", {}, el("button", { class: "delete", "data-testid": "delete-document", onclick: () => remove(d) }, "Delete")),
          ),
        ),
      );
      if (!docs.length) tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No documents yet: upload some.")));
    } catch (err) {
      showError(tbody, err);
    }
  }

  async function remove(d) {
    if (!confirm(`Delete ${d.name} and its ${d.chunks} chunks?`)) return;
    let done, message;
    try {
      const out = await api(`/api/documents/${d.id}`, { method: "DELETE" });
      [done, message] = [1, `deleted ${d.name} (${out.chunks_deleted} chunks)`];
    } catch (err) {
      [done, message] = [0, err.message];
    }
    await load(); // the list first: the message must never describe a row still on the page
    progress(done, message);
    onChange();
  }

  async function watch(job, verb) {
    await follow(`/api/jobs/${job.id}/events`, (name, j) => {
      const p = j.progress || {};
      const total = p.files_total || 1;
      if (j.state === "failed") progress(1, `${verb} failed: ${j.error}`);
      else if (j.state === "done") {
        const r = j.result || {};
        const skipped = (r.skipped || []).map((s) => `skipped ${s.path.split("/").pop()}: ${s.reason}`).join("; ");
        progress(1, `${verb}: ${r.files_ingested ?? 0} files, ${r.chunks ?? 0} chunks in ${r.seconds ?? 0} s${skipped ? ` — ${skipped}` : ""}`);
      } else progress((p.files_done || 0) / total, `${verb}: ${p.files_done || 0}/${total} files, ${p.chunks || 0} chunks${p.current ? ` (${p.current})` : ""}`);
    });
    await load();
    onChange();
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!input.files.length) return;
    const files = [...input.files];
    try {
      progress(0, `uploading ${files.length} file(s)…`);
      const job = await upload(files, (f) => progress(f, `uploading: ${Math.round(100 * f)}%`));
      input.value = "";
      progress(0, "ingesting…");
      await watch(job, "ingested");
    } catch (err) {
      progress(0, err.message);
    }
  });

  document.getElementById("sync-button").addEventListener("click", async () => {
    try {
      progress(0, "syncing…");
      await watch(await api("/api/sync", { method: "POST" }), "synced");
    } catch (err) {
      progress(0, err.message);
    }
  });

  return { onShow: load };
}
