// The HTTP API from the page: JSON calls, server-sent event streams over fetch, uploads with progress.
// The API key (when the server wants one) is kept in this browser's localStorage and sent as a header.

const KEY = "kvgraph-api-key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const key = localStorage.getItem(KEY);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function askForKey() {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  input.value = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (input.value) localStorage.setItem(KEY, input.value.trim());
}

async function failure(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    message = body?.error?.message || message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, message);
}

async function send(path, init, retried = false) {
  const res = await fetch(path, init());
  if (res.status === 401 && !retried) {
    await askForKey();
    return send(path, init, true);
  }
  if (!res.ok) throw await failure(res);
  return res;
}

export async function api(path, { method = "GET", body } = {}) {
  const res = await send(path, () => ({
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  }));
  return res.json();
}

// POST ``body`` and call ``onEvent(name, data)`` for each server-sent event until the stream ends.
export async function stream(path, body, onEvent, signal) {
  const res = await send(path, () => ({
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal,
  }));
  await readEvents(res, onEvent);
}

// GET an event stream (job progress).
export async function follow(path, onEvent, signal) {
  const res = await send(path, () => ({ headers: headers({ Accept: "text/event-stream" }), signal }));
  await readEvents(res, onEvent);
}

async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// Upload files with XMLHttpRequest, which reports upload progress (fetch does not).
export function upload(files, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/documents");
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "upload failed: the server could not be reached"));
    xhr.onload = async () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // keep null
      }
      if (xhr.status === 401) {
        await askForKey();
        upload(files, onProgress).then(resolve, reject);
      } else if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body?.error?.message || `upload failed (${xhr.status})`));
    };
    xhr.send(form);
  });
}

// A tiny element builder: el("div", {class: "x", onclick: f}, child, "text").
export function el(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "line", "circle", "text", "rect", "path", "title"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function showError(where, err) {
  where.replaceChildren(el("p", { class: "error", "data-testid": "error" }, err.message || String(err)));
}
