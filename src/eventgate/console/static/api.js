// The API as the console calls it: the admin key from sessionStorage on every request.
const KEY = "eventgate.console.key";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

// One request; never throws for an HTTP status: {status, ok, headers, data}.
export async function call(method, path, {body, headers = {}, contentType} = {}) {
  const sent = {Accept: "application/json", ...headers};
  if (apiKey()) sent["X-API-Key"] = apiKey();
  if (body !== undefined) sent["Content-Type"] = contentType || "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers: sent, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    return {status: 0, ok: false, headers: new Headers(), data: {detail: `no answer: ${error.message}`}};
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = {detail: text.slice(0, 300)}; }
  }
  return {status: response.status, ok: response.ok, headers: response.headers, data};
}

// What went wrong, in one line, from an RFC 9457 problem.
export function problemText(result) {
  const data = result.data || {};
  const detail = typeof data === "object" ? (data.detail || data.title || "") : "";
  return `${result.status || "network"} ${detail}`.trim();
}

// An event stream's URL: EventSource cannot send headers, so the key goes in ?api_key=.
export function streamUrl(path, params) {
  const query = new URLSearchParams(params);
  if (apiKey()) query.append("api_key", apiKey());
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}
