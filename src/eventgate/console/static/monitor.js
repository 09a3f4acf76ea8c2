// What the system is doing: the live event stream (SSE) and, refreshed every few seconds,
// the projections, functions and dead letters from the admin API.
import {call, problemText, streamUrl} from "./api.js";
import {el, json, notify, show, table} from "./dom.js";

const KEEP_EVENTS = 200;
let source = null;
const rendered = new Map();  // panel -> the JSON it shows, to redraw only on a change

// -- live events ------------------------------------------------------------------------

export function followEvents(after) {
  stopEvents();
  const types = document.getElementById("event-types").value.split(/[\s,]+/).filter(Boolean);
  const params = types.map((t) => ["type", t]);
  if (after > 0) params.push(["lastEventId", String(after)]);
  const url = streamUrl("/api/events", params);
  const status = document.getElementById("events-status");
  const list = document.getElementById("event-list");
  list.replaceChildren();
  status.textContent = "connecting…";
  source = new EventSource(url);
  source.onopen = () => { status.textContent = "following"; };
  source.onmessage = (message) => addEvent(list, message);
  source.onerror = () => {
    if (source && source.readyState === EventSource.CLOSED) {
      explain(url, status);
    } else {
      status.textContent = "reconnecting…";
    }
  };
}

export function stopEvents() {
  if (source) source.close();
  source = null;
  document.getElementById("events-status").textContent = "stopped";
}

async function explain(url, status) {
  // EventSource hides the refusal: ask once with fetch to say why (401, 403, 400...)
  const controller = new AbortController();
  try {
    const response = await fetch(url, {signal: controller.signal, headers: {Accept: "text/event-stream"}});
    const text = response.ok ? "" : await response.text();
    controller.abort();
    let detail = "";
    try { detail = JSON.parse(text).detail || ""; } catch { detail = ""; }
    status.textContent = `closed: ${response.status} ${detail}`.trim();
  } catch {
    status.textContent = "closed: the server cannot be reached";
  }
}

function addEvent(list, message) {
  let event;
  try { event = JSON.parse(message.data); } catch { return; }
  const data = el("div", {});
  const row = el("li", {"data-position": message.lastEventId},
    el("code", {}, message.lastEventId), " ", el("strong", {class: "event-type"}, event.type),
    " ", el("span", {class: "event-subject"}, event.subject || ""), " ",
    el("span", {class: "muted"}, event.time || ""), " ",
    el("button", {type: "button", "aria-label": `data of event ${message.lastEventId}`,
      onclick: () => show(data, data.childElementCount ? [] : json(event))}, "Data"),
    data);
  let ul = list.querySelector("ul");
  if (!ul) { ul = el("ul", {"aria-label": "events, newest first"}); list.append(ul); }
  ul.prepend(row);
  while (ul.childElementCount > KEEP_EVENTS) ul.lastElementChild.remove();
}

// -- panels from the admin API -----------------------------------------------------------

function changed(panel, data) {
  const text = JSON.stringify(data);
  if (rendered.get(panel) === text) return false;
  rendered.set(panel, text);
  return true;
}

async function admin(method, path) {
  const result = await call(method, path);
  if (!result.ok) notify(`${method} ${path}: ${problemText(result)}`);
  return result;
}

export async function refreshProjections() {
  const result = await call("GET", "/admin/projections");
  const container = document.getElementById("projection-list");
  if (!result.ok) { failed(container, "projections", result); return null; }
  if (!changed("projections", result.data)) return result.data;
  const rows = result.data.projections.map((p) => [p.name, p.checkpoint, p.head, p.lag, p.parked.length]);
  const parked = result.data.projections.flatMap((p) => p.parked);
  const parkedRows = parked.map((s) => [s.projection, s.stream, s.position, s.type,
    {text: s.error, className: "error"}, s.events, s.request || "",
    el("span", {}, parkedButton("Retry", s), " ", parkedButton("Skip", s))]);
  show(container, table("projections", ["projection", "checkpoint", "head", "lag", "parked"], rows),
    parked.length ? [el("h3", {}, "Parked streams"), table("parked streams",
      ["projection", "stream", "position", "event", "error", "waiting", "asked", ""], parkedRows)] : []);
  return result.data;
}

function parkedButton(label, stream) {
  const path = `/admin/projections/${encodeURIComponent(stream.projection)}/${label.toLowerCase()}`
    + `?stream=${encodeURIComponent(stream.stream)}`;
  return el("button", {type: "button", "aria-label": `${label} ${stream.projection} ${stream.stream}`,
    onclick: async () => {
      const result = await admin("POST", path);
      if (result.ok) notify(`${label}: asked; the upsert service takes it within a second`);
      refreshProjections();
    }}, label);
}

export async function refreshFunctions() {
  const result = await call("GET", "/admin/functions");
  const container = document.getElementById("function-list");
  if (!result.ok) { failed(container, "functions", result); return; }
  if (!changed("functions", result.data)) return;
  const rows = result.data.functions.map((f) => [f.name, f.triggers.join(", "), f.checkpoint,
    f.lag, f.invocations, f.failures, f.dead_letters]);
  show(container, rows.length ? table("functions",
    ["function", "triggers", "checkpoint", "lag", "invocations", "failures", "dead letters"], rows)
    : el("p", {class: "muted"}, "No functions."));
}

export async function refreshDeadLetters() {
  const result = await call("GET", "/admin/dead-letters");
  const container = document.getElementById("dead-letter-list");
  if (!result.ok) { failed(container, "dead-letters", result); return; }
  if (!changed("dead-letters", result.data)) return;
  const letters = result.data.dead_letters;
  const rows = letters.map((d) => [d.id, d.function, d.event.type, d.event.stream_id, d.status,
    {text: `${d.error_type}: ${d.error_message}`, className: "error"}, d.attempts,
    el("span", {}, letterButton("Show", d), " ", letterButton("Replay", d), " ",
      letterButton("Discard", d))]);
  const all = el("button", {type: "button", onclick: async () => {
    const replayed = await admin("POST", "/admin/dead-letters/replay");
    if (replayed.ok) notify(`replaying ${replayed.data.replaying} dead letter(s)`);
    refreshDeadLetters();
  }}, "Replay all");
  show(container, letters.length ? [table("dead letters",
    ["id", "function", "event", "stream", "status", "error", "attempts", ""], rows), all]
    : el("p", {class: "muted"}, "No dead letters."));
}

function letterButton(label, letter) {
  const path = `/admin/dead-letters/${encodeURIComponent(letter.id)}`;
  const details = document.getElementById("dead-letter-details");
  const act = {
    Show: async () => {
      const result = await admin("GET", path);
      if (result.ok) show(details, el("h3", {}, `Dead letter ${letter.id}`), json(result.data));
    },
    Replay: async () => {
      const result = await admin("POST", `${path}/replay`);
      if (result.ok) notify(`dead letter ${letter.id}: replay asked`);
      refreshDeadLetters();
    },
    Discard: async () => {
      const result = await admin("DELETE", path);
      if (result.ok) { notify(`dead letter ${letter.id} discarded`); show(details); }
      refreshDeadLetters();
    },
  }[label];
  return el("button", {type: "button", "aria-label": `${label} dead letter ${letter.id}`,
    onclick: act}, label);
}

function failed(container, what, result) {
  rendered.delete(what);
  show(container, el("p", {class: "problem"}, `${what}: ${problemText(result)}`));
}
