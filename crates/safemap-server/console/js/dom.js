// Small DOM helpers. Untrusted text (keys, values, reasons) only ever becomes
// text nodes or attribute values, never markup.

/** Creates an element: attrs (class, text, on<event>, other attributes), then children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** A labelled form field: [label, input] with matching ids. */
export function field(id, label, attrs = {}, tag = "input") {
  return el("div", { class: "field" },
    el("label", { for: id, text: label }),
    el(tag, { id, name: id, ...attrs }));
}

/** Local date and time of an RFC 3339 instant. */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

/** JSON on one line, cut to `max` characters. */
export function short(value, max = 48) {
  const s = JSON.stringify(value);
  if (s === undefined) return "";
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

/** A value as collapsed JSON: one short line, the whole value on opening. */
export function jsonDetails(value) {
  if (value === undefined || value === null) return el("span", { class: "muted", text: "—" });
  return el("details", { class: "json" },
    el("summary", { text: short(value) }),
    el("pre", { text: JSON.stringify(value, null, 2) }));
}

/** Seconds as a short duration: 90 → "1m 30s", 604800 → "7d". */
export function duration(seconds) {
  let s = Math.round(seconds);
  const parts = [];
  for (const [unit, n] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    if (s >= n) { parts.push(Math.floor(s / n) + unit); s %= n; }
  }
  return parts.length ? parts.slice(0, 2).join(" ") : "0s";
}

/** Query string of the non-empty values of `params` (with a leading "?"). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && String(v) !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}
