// The app's resources, driven by /openapi.json: a list with search and pages, a create form,
// an item's details with every command its OpenAPI operations declare. Item commands send
// If-Match with the ETag the page read, so a stale edit is a 412 that offers a reload.
import {call, problemText} from "./api.js";
import {recordCommand} from "./commands.js";
import {el, notify, show, table} from "./dom.js";

const SERVED = ["/api/events", "/api/commands", "/api/schemas"];  // eventgate's, not the app's
const WAIT = {Prefer: "wait=3"};  // answer once the read models have it, so a reload shows it
let document_ = null;
let current = null;  // {collection, item}
let cursor = null;
let wired = false;

export async function loadResources() {
  const result = await call("GET", "/openapi.json");
  if (!result.ok) { notify(`cannot read /openapi.json: ${problemText(result)}`); return; }
  document_ = result.data;
  const select = document.getElementById("resource");
  const collections = Object.keys(document_.paths).filter((path) =>
    path.startsWith("/api/") && !path.includes("{") && document_.paths[path].get
    && !SERVED.some((s) => path === s || path.startsWith(`${s}/`)));
  show(select, collections.map((path) => el("option", {value: path}, path)));
  if (!wired) {
    wired = true;
    select.addEventListener("change", () => choose(select.value));
    document.getElementById("list-form").addEventListener("submit", (e) => {
      e.preventDefault(); cursor = null; list();
    });
    document.getElementById("next-page").addEventListener("click", () => list());
  }
  if (collections.length) await choose(collections[0]);
}

async function choose(collection) {
  const item = Object.keys(document_.paths).find((p) =>
    p.startsWith(`${collection}/{`) && p.indexOf("/", collection.length + 1) === -1);
  current = {collection, item};
  cursor = null;
  const create = document_.paths[collection].post;
  show(document.getElementById("create"),
    create ? forms(create, "POST", collection, null) : el("p", {class: "muted"}, "No create."),
    el("div", {id: "create-problem", role: "alert"}));
  show(document.getElementById("details"), el("p", {class: "muted"}, "Open an item of the list."));
  await list();
}

export async function list() {
  if (!current) return;
  const params = new URLSearchParams({limit: "20"});
  const q = document.getElementById("search").value.trim();
  if (q) params.set("q", q);
  if (cursor) params.set("cursor", cursor);
  const result = await call("GET", `${current.collection}?${params}`);
  const container = document.getElementById("list");
  if (!result.ok) { show(container, el("p", {class: "problem"}, problemText(result))); return; }
  const items = result.data.items || [];
  cursor = result.data.next || null;
  document.getElementById("next-page").hidden = !cursor;
  const columns = [...new Set(items.flatMap((i) => Object.keys(i)))];
  const rows = items.map((i) => [
    ...columns.map((c) => format(i[c])),
    current.item && i.id !== undefined
      ? el("button", {type: "button", "aria-label": `Open ${i.id}`, onclick: () => details(i.id)},
        "Open") : "",
  ]);
  show(container, items.length ? table("items", [...columns, ""], rows)
    : el("p", {class: "muted"}, "No items."));
}

function itemPath(id) {
  return current.item.replace(/\{[a-z_]+\}/, encodeURIComponent(id));
}

export async function details(id) {
  const path = itemPath(id);
  const result = await call("GET", path);
  const container = document.getElementById("details");
  if (!result.ok) {
    show(container, el("p", {class: "problem"}, `${path}: ${problemText(result)}`));
    return;
  }
  const etag = result.headers.get("ETag");
  const fields = Object.entries(result.data).map(([k, v]) => [el("dt", {}, k), el("dd", {}, format(v))]);
  const operations = document_.paths[current.item];
  const actions = ["put", "post"].filter((m) => operations[m])
    .flatMap((m) => forms(operations[m], m.toUpperCase(), path, etag, id));
  if (operations.delete) actions.push(remove(operations.delete, path, etag, id));
  show(container, el("dl", {"aria-label": "item details"}, fields),
    el("p", {class: "muted"}, "ETag: ", el("code", {id: "etag"}, etag || "none")),
    el("div", {id: "item-problem", role: "alert"}), actions);
}

// One form per request body the operation takes (a POST may take several domain-models).
function forms(operation, method, path, etag, id) {
  const content = (operation.requestBody && operation.requestBody.content) || {};
  return Object.entries(content).map(([mediaType, body]) => {
    const schema = resolve(body.schema);
    const model = /domain-model=([^;]+)/.exec(mediaType);
    const title = model ? model[1] : (operation.summary || method);
    const inputs = Object.entries(schema.properties || {}).map(([name, property]) =>
      field(title, name, resolve(property), (schema.required || []).includes(name)));
    const form = el("form", {class: "action", "aria-label": title},
      el("strong", {}, title), inputs.map((i) => i.nodes), el("button", {type: "submit"}, title));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const sent = {};
      for (const input of inputs) {
        const value = input.value();
        if (value !== undefined) sent[input.name] = value;
      }
      await command(title, method, path, etag, id, {body: sent, contentType: mediaType});
    });
    return form;
  });
}

function remove(operation, path, etag, id) {
  const title = operation.summary || "DELETE";
  return el("form", {class: "action", "aria-label": title,
    onsubmit: (event) => { event.preventDefault(); command(title, "DELETE", path, etag, id, {}); }},
  el("strong", {}, title), el("button", {type: "submit"}, `${title} (DELETE)`));
}

function field(form, name, schema, required) {
  const types = [schema.type, ...(schema.anyOf || []).map((s) => s.type)];
  const numeric = types.includes("integer") || types.includes("number");
  const inputId = `${form}-${name}`;
  const input = el("input", {id: inputId, name, required, type: numeric ? "number" : "text",
    minlength: schema.minLength, maxlength: schema.maxLength, spellcheck: "false"});
  const label = el("label", {for: inputId}, required ? name : `${name} (optional)`);
  const value = () => {
    if (input.value === "") return undefined;
    return numeric && /^-?\d+(\.\d+)?$/.test(input.value) ? Number(input.value) : input.value;
  };
  return {name, nodes: [label, input], value};
}

function resolve(schema) {
  if (schema && schema.$ref) {
    return document_.components.schemas[schema.$ref.split("/").pop()] || {};
  }
  return schema || {};
}

async function command(title, method, path, etag, id, {body, contentType}) {
  const headers = {...WAIT};
  if (etag) headers["If-Match"] = etag;
  const result = await call(method, path, {body, contentType, headers});
  if (result.status === 412 && id !== undefined) { stale(id, result); return; }
  if (!result.ok) {
    const where = document.getElementById(id === undefined ? "create-problem" : "item-problem");
    show(where, el("p", {class: "problem"}, `${title}: ${problemText(result)}`));
    return;
  }
  recordCommand(result, title);
  notify(`${title}: ${result.status === 200 ? "applied" : "accepted"}`);
  await list();
  const created = id === undefined && result.data && result.data.id;
  if (id !== undefined || created) await details(id === undefined ? created : id);
}

function stale(id, result) {
  show(document.getElementById("item-problem"),
    el("p", {class: "problem"}, `This item changed since you read it (${problemText(result)}).`),
    el("button", {type: "button", onclick: () => details(id)}, "Reload"));
}

function format(value) {
  return value !== null && typeof value === "object" ? JSON.stringify(value) : String(value);
}
