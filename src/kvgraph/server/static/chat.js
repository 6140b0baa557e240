// Chat: conversations kept by the server, answers streamed as they are written, citations that open
// the cited chunk (its text, file and page).
import { api, el, stream } from "./api.js";

const MARKER = /\[(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\]/g;

export function initChat() {
  const list = document.getElementById("conversation-list");
  const messages = document.getElementById("messages");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  let current = null;
  let busy = false;

  async function loadList() {
    const conversations = await api("/api/conversations");
    list.replaceChildren(
      ...conversations.map((c) =>
        el(
          "li",
          { class: c.id === current ? "active" : "", "data-testid": "conversation" },
          el("button", { class: "link", onclick: () => open(c.id) }, c.title || "(new)"),
          el("button", { class: "delete", title: "Delete", "aria-label": "Delete conversation", onclick: () => remove(c.id) }, "×"),
        ),
      ),
    );
  }

  async function open(id) {
    const c = await api(`/api/conversations/${encodeURIComponent(id)}`);
    current = c.id;
    messages.replaceChildren();
    for (const t of c.turns) {
      messages.append(userBubble(t.question));
      const bubble = answerBubble();
      renderAnswer(bubble, { answer: t.answer, citations: t.citations }, t.standalone !== t.question ? t.standalone : null);
      messages.append(bubble);
    }
    loadList();
  }

  async function remove(id) {
    await api(`/api/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (id === current) {
      current = null;
      messages.replaceChildren();
    }
    loadList();
  }

  document.getElementById("new-conversation").addEventListener("click", () => {
    current = null;
    messages.replaceChildren();
    loadList();
    input.focus();
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || busy) return;
    busy = true;
    input.value = "";
    messages.append(userBubble(text));
    const bubble = answerBubble();
    messages.append(bubble);
    const body = bubble.querySelector(".text");
    let standalone = null;
    try {
      if (!current) current = (await api("/api/conversations", { method: "POST", body: {} })).id;
      bubble.classList.add("streaming");
      await stream(`/api/conversations/${current}/messages`, { message: text, stream: true }, (name, data) => {
        if (name === "question" && data.method !== "as-is") {
          standalone = data.standalone;
          bubble.querySelector(".standalone").textContent = `searching for: ${standalone}`;
        } else if (name === "delta") {
          body.textContent += data.text;
        } else if (name === "answer") {
          renderAnswer(bubble, data, standalone);
        } else if (name === "error") {
          body.append(el("p", { class: "error" }, data.message));
        }
        messages.scrollTop = messages.scrollHeight;
      });
    } catch (err) {
      body.append(el("p", { class: "error", "data-testid": "error" }, err.message));
    } finally {
      bubble.classList.remove("streaming");
      busy = false;
      loadList();
    }
  });

  return { onShow: () => loadList().catch(() => {}) };
}

function userBubble(text) {
  return el("div", { class: "bubble user", "data-testid": "user-message" }, text);
}

function answerBubble() {
  return el(
    "div",
    { class: "bubble answer", "data-testid": "answer" },
    el("div", { class: "standalone muted", "data-testid": "standalone" }),
    el("div", { class: "text", "data-testid": "answer-text" }),
    el("div", { class: "sources", "data-testid": "sources" }),
  );
}

// The answer's text with each [n] as a button that opens citation n; then the list of sources.
export function renderAnswer(bubble, data, standalone) {
  const byNumber = new Map((data.citations || []).map((c) => [c.number, c]));
  const text = bubble.querySelector(".text");
  text.replaceChildren();
  let last = 0;
  for (const m of data.answer.matchAll(MARKER)) {
    text.append(data.answer.slice(last, m.index));
    const numbers = m[1].split(/[,;]/).map((n) => Number(n.trim()));
    text.append("[");
    numbers.forEach((n, i) => {
      if (i) text.append(", ");
      const c = byNumber.get(n);
      text.append(c ? el("button", { class: "cite", "data-testid": "citation-link", onclick: () => showCitation(c) }, String(n)) : String(n));
    });
    text.append("]");
    last = m.index + m[0].length;
  }
  text.append(data.answer.slice(last));
  if (standalone) bubble.querySelector(".standalone").textContent = `searching for: ${standalone}`;
  const sources = bubble.querySelector(".sources");
  sources.replaceChildren(
    ...(data.citations || []).map((c) =>
      el("button", { class: "source", "data-testid": "source", onclick: () => showCitation(c) }, `[${c.number}] ${c.source}`),
    ),
  );
}

export function showCitation(c) {
  const panel = document.getElementById("citation");
  document.getElementById("citation-title").textContent = `[${c.number}] ${c.source}`;
  const where = [c.file_name || c.file_path, c.page != null ? `page ${c.page}` : null, c.score != null ? `score ${Number(c.score).toFixed(3)}` : null];
  document.getElementById("citation-where").textContent = where.filter(Boolean).join(" · ");
  document.getElementById("citation-text").textContent = c.text || "(the chunk's text is not stored with this turn)";
  panel.hidden = false;
}
