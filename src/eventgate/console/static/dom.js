// Elements built node by node: every value from the server becomes a text node or an
// attribute value, never markup.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...nodes(children));
  return node;
}

function nodes(children) {
  return children.flat(Infinity)
    .filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

export function show(container, ...children) {
  container.replaceChildren(...nodes(children));
}

// A table of `rows` (arrays of cells: text, nodes or {text, className}).
export function table(label, headings, rows) {
  const head = el("thead", {}, el("tr", {}, headings.map((h) => el("th", {scope: "col"}, h))));
  const body = el("tbody", {}, rows.map((row) => el("tr", {}, row.map(cell))));
  return el("table", {"aria-label": label}, head, body);
}

function cell(value) {
  if (value && typeof value === "object" && !(value instanceof Node) && !Array.isArray(value)) {
    return el("td", {class: value.className}, value.text);
  }
  return el("td", {}, value);
}

export function json(value) {
  return el("pre", {}, JSON.stringify(value, null, 2));
}

let noticeTimer = null;
export function notify(text) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { notice.textContent = ""; }, 6000);
}
