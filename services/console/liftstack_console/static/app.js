// liftstack console: a little vanilla JS on server-rendered pages.
"use strict";

async function api(method, url, body) {
  const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(url, opts);
  let data = null;
  if (res.status !== 204) { try { data = await res.json(); } catch (e) { data = null; } }
  if (!res.ok) {
    const msg = (data && data.error && data.error.message) || `HTTP ${res.status}`;
    const err = new Error(msg);
    err.status = res.status;
    err.field = data && data.error && data.error.field;
    throw err;
  }
  return data;
}

function toast(text) {
  const el = document.createElement("div");
  el.className = "toast";
  el.textContent = text;
  document.body.appendChild(el);
  setTimeout(() => el.remove(), 2500);
}

function showError(el, err) {
  if (!el) { alert(err.message); return; }
  el.textContent = err.message;
  el.hidden = false;
}

// Copy buttons: <button data-copy="#id"> copies the text of #id.
document.addEventListener("click", async (ev) => {
  const btn = ev.target.closest("[data-copy]");
  if (!btn) return;
  const src = document.querySelector(btn.dataset.copy);
  const text = src ? src.textContent.trim() : "";
  try { await navigator.clipboard.writeText(text); } catch (e) {
    const ta = document.createElement("textarea");
    ta.value = text; document.body.appendChild(ta); ta.select();
    try { document.execCommand("copy"); } catch (e2) { /* nothing else to try */ }
    ta.remove();
  }
  btn.textContent = "Copied";
  setTimeout(() => { btn.textContent = "Copy"; }, 1500);
});

// Buttons that POST to the console's API, then reload: <button data-post="/api/..." data-confirm="...">
document.addEventListener("click", async (ev) => {
  const btn = ev.target.closest("[data-post]");
  if (!btn) return;
  ev.preventDefault();
  if (btn.dataset.confirm && !confirm(btn.dataset.confirm)) return;
  btn.disabled = true;
  const errEl = btn.dataset.error ? document.querySelector(btn.dataset.error) : null;
  try {
    const body = btn.dataset.body ? JSON.parse(btn.dataset.body) : {};
    await api(btn.dataset.method || "POST", btn.dataset.post, body);
    if (btn.dataset.next) location.href = btn.dataset.next; else location.reload();
  } catch (err) {
    showError(errEl, err);
    btn.disabled = false;
  }
});

// Poll a JSON endpoint and let the page render it; `stop(data)` true ends polling.
function poll(url, render, stop, every) {
  let timer = null;
  const tick = async () => {
    try {
      const data = await api("GET", url);
      render(data);
      if (stop && stop(data)) return;
    } catch (e) { /* transient: try again */ }
    timer = setTimeout(tick, every || 1000);
  };
  tick();
  return () => clearTimeout(timer);
}

function fmtInt(n) { return (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US"); }
function pct(x) { return (x === null || x === undefined) ? "–" : (100 * x).toFixed(1) + "%"; }
