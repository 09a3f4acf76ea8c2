// The console's start: the key, then every panel, refreshed every few seconds while the
// tab is visible (one request per panel at a time; the event stream is pushed over SSE).
import {apiKey, call, problemText, setApiKey} from "./api.js";
import {refreshCommands} from "./commands.js";
import {followEvents, refreshDeadLetters, refreshFunctions, refreshProjections, stopEvents} from "./monitor.js";
import {loadResources} from "./resources.js";

const EVERY_MS = 3000;
const RECENT = 100;  // the live stream starts this many positions before the head
let busy = false;

async function checkKey() {
  const status = document.getElementById("key-status");
  const result = await call("GET", "/admin/functions");
  if (result.ok) {
    status.textContent = apiKey() ? "key accepted (admin)" : "no key needed (auth is off)";
    status.className = "ok";
  } else if (result.status === 401) {
    status.textContent = "enter an API key with the admin scope";
    status.className = "problem";
  } else if (result.status === 403) {
    status.textContent = "this key does not hold the admin scope";
    status.className = "problem";
  } else {
    status.textContent = problemText(result);
    status.className = "problem";
  }
  return result.ok;
}

async function refresh() {
  if (busy || document.hidden) return;
  busy = true;
  try {
    await Promise.all([refreshProjections(), refreshFunctions(), refreshDeadLetters(),
      refreshCommands()]);
  } finally {
    busy = false;
  }
}

async function start() {
  const ready = await checkKey();
  await loadResources();
  const projections = await refreshProjections();
  const head = projections ? projections.head : 0;
  document.getElementById("event-after").value = String(Math.max(0, head - RECENT));
  if (ready) followEvents(Math.max(0, head - RECENT));
  await refresh();
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(document.getElementById("key").value.trim());
  document.getElementById("key").value = "";
  start();
});
document.getElementById("forget-key").addEventListener("click", () => {
  setApiKey("");
  stopEvents();
  checkKey();
});
document.getElementById("events-form").addEventListener("submit", (event) => {
  event.preventDefault();
  followEvents(Number(document.getElementById("event-after").value) || 0);
});
document.getElementById("events-stop").addEventListener("click", stopEvents);
setInterval(refresh, EVERY_MS);
start();
