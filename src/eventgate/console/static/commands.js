// The commands this console sent (kept for the tab's session) and what became of each:
// GET /api/commands/{id}, asked again on each refresh until its outcome is settled.
import {call, problemText} from "./api.js";
import {el, json, show, table} from "./dom.js";

const KEY = "eventgate.console.commands";
const KEEP = 20;
const statuses = new Map();  // command id -> last status body (or a problem line)
let shown = "";

function sent() {
  try { return JSON.parse(sessionStorage.getItem(KEY) || "[]"); } catch { return []; }
}

// Remember the command a 200/202 answer links to (one that stored nothing has no status).
export function recordCommand(result, label) {
  const data = result.data || {};
  const status = data.links && data.links.status;
  if (!data.commandId || typeof status !== "string" || !status.startsWith("/")) return;
  const id = data.commandId;
  const list = [{id, label, status, at: new Date().toISOString()},
    ...sent().filter((c) => c.id !== id)];
  sessionStorage.setItem(KEY, JSON.stringify(list.slice(0, KEEP)));
  refreshCommands();
}

function settled(status) {
  return status && typeof status === "object" && status.outcome && status.outcome !== "pending"
    && (status.status === "applied" || status.outcome === "failed");
}

export async function refreshCommands() {
  const list = sent();
  await Promise.all(list.filter((c) => !settled(statuses.get(c.id))).map(async (c) => {
    const result = await call("GET", c.status || `/api/commands/${encodeURIComponent(c.id)}`);
    statuses.set(c.id, result.ok ? result.data : problemText(result));
  }));
  const now = JSON.stringify(list.map((c) => [c.id, statuses.get(c.id)]));
  if (now !== shown) { shown = now; render(list); }
}

function render(list) {
  const container = document.getElementById("command-list");
  if (!list.length) { show(container, el("p", {class: "muted"}, "None yet.")); return; }
  const details = el("div", {id: "command-details"});
  const rows = list.map((c) => {
    const status = statuses.get(c.id);
    const known = status && typeof status === "object";
    const failures = known ? status.failures.length : "";
    const open = el("button", {type: "button", onclick: () => show(details, json(status))},
      "Show");
    return [c.label, {text: c.id, className: "id"}, known ? status.status : (status || "…"),
      known ? status.outcome : "", failures, known ? open : ""];
  });
  show(container, table("commands sent", ["command", "id", "status", "outcome", "failures", ""],
    rows), details);
}
