// Talking to the server. The token lives in sessionStorage (this tab only) and
// is sent in the Authorization header; it never appears in a URL.

const TOKEN_KEY = "safemap.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An error answer of the API: status, code and the server's message. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let onUnauthenticated = () => {};
/** Called when the server no longer knows the token (revoked, restarted empty). */
export function setUnauthenticatedHandler(f) { onUnauthenticated = f; }

/**
 * One request. `reason` goes in X-Reason-Encoded as percent-encoded UTF-8, so
 * that reasons in any language pass through fetch (which allows only Latin-1
 * header values). Resolves to the parsed JSON (or text when `text` is set).
 */
export async function call(method, path, { body, reason, headers = {}, text = false } = {}) {
  const h = { ...headers };
  const t = token.get();
  if (t) h["Authorization"] = "Bearer " + t;
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (reason !== undefined) h["X-Reason-Encoded"] = encodeURIComponent(reason);
  const resp = await fetch(path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  const raw = await resp.text();
  if (resp.ok) return text ? raw : (raw ? JSON.parse(raw) : null);
  let err = {};
  try { err = JSON.parse(raw).error || {}; } catch { /* not JSON */ }
  const e = new ApiError(resp.status, err.code || "http_" + resp.status,
    err.message || raw || resp.statusText, err.details);
  if (resp.status === 401) onUnauthenticated(e);
  throw e;
}

/** A path segment (map, key, plan id) percent-encoded, `/` included. */
export const seg = encodeURIComponent;
