// Live charts: a sampler polls the maps' counters and /metrics every two
// seconds while signed in; charts show per-second rates over the last minutes
// as inline SVG drawn here (no chart library).

import { call } from "./api.js";
import { el } from "./dom.js";

const SAMPLE_MS = 2000;
const KEEP = 90; // samples: three minutes
const OUTCOMES = ["deleted", "vetoed", "mismatch", "breaker", "not_found"];

const samples = [];
const listeners = new Set();
let timer = null;

/** The latest /ui/data/maps answer, or null before the first sample. */
export let latestMaps = null;

/** Calls `f()` after every sample; returns the unsubscribe function. */
export function onSample(f) { listeners.add(f); return () => listeners.delete(f); }

function metric(text, name) {
  for (const line of text.split("\n")) {
    if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
      const v = Number(line.slice(line.lastIndexOf(" ") + 1));
      if (Number.isFinite(v)) return v;
    }
  }
  return null;
}

async function sample() {
  // A tab in the background asks nothing of the server (the chart shows a gap).
  if (document.hidden) return;
  try {
    const [maps, text] = await Promise.all([
      call("GET", "/ui/data/maps"),
      call("GET", "/metrics", { text: true }).catch(() => ""),
    ]);
    latestMaps = maps;
    const s = { t: Date.now(), reads: 0, writes: 0, deletes: {}, perMap: {} };
    for (const o of OUTCOMES) s.deletes[o] = 0;
    for (const m of maps.maps) {
      s.reads += m.reads;
      s.writes += m.writes;
      for (const o of OUTCOMES) s.deletes[o] += m.deletes[o];
      s.perMap[m.name] = m.deletes;
    }
    s.fsyncSum = metric(text, "safemap_fsync_duration_seconds_sum");
    s.fsyncCount = metric(text, "safemap_fsync_duration_seconds_count");
    samples.push(s);
    if (samples.length > KEEP + 1) samples.shift();
    for (const f of listeners) f();
  } catch { /* a failed sample leaves a gap; the next one tries again */ }
}

export function startSampler() {
  if (timer) return;
  sample();
  timer = setInterval(sample, SAMPLE_MS);
}

export function stopSampler() {
  clearInterval(timer);
  timer = null;
  samples.length = 0;
  latestMaps = null;
}

/** Per-second rates between consecutive samples: {reads, writes, <outcome>..., fsyncMs}. */
export function rates() {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dt = (b.t - a.t) / 1000;
    const r = { t: b.t, reads: (b.reads - a.reads) / dt, writes: (b.writes - a.writes) / dt };
    for (const o of OUTCOMES) r[o] = (b.deletes[o] - a.deletes[o]) / dt;
    const dc = (b.fsyncCount ?? 0) - (a.fsyncCount ?? 0);
    r.fsyncMs = dc > 0 ? ((b.fsyncSum - a.fsyncSum) / dc) * 1000 : null;
    out.push(r);
  }
  return out;
}

/** Per-second delete rates by outcome of one map (absent samples count as no change). */
export function mapRates(name) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1].perMap[name], b = samples[i].perMap[name];
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    const r = { t: samples[i].t };
    for (const o of OUTCOMES) r[o] = a && b ? (b[o] - a[o]) / dt : 0;
    out.push(r);
  }
  return out;
}

/** The chart lines of deletes by outcome. */
export const OUTCOME_LINES = [
  { name: "deleted", key: "deleted", color: "c3" },
  { name: "vetoed", key: "vetoed", color: "c4" },
  { name: "breaker", key: "breaker", color: "c5" },
  { name: "mismatch", key: "mismatch", color: "c6" },
  { name: "not found", key: "not_found", color: "c7" },
];

const W = 320, H = 110, PAD = 4;

/**
 * A small line chart: `lines` is [{name, key, color}] over `points` (from
 * rates()); the legend gives each line's latest value, and the SVG's label
 * says the same for screen readers.
 */
export function chart(title, unit, lines, points) {
  const max = Math.max(1e-9, ...points.flatMap((p) => lines.map((l) => p[l.key] ?? 0)));
  const x = (i) => PAD + (i / Math.max(1, KEEP - 1)) * (W - 2 * PAD);
  const y = (v) => H - PAD - (v / max) * (H - 2 * PAD);
  const offset = KEEP - points.length;
  const latest = (l) => {
    const v = points.length ? points[points.length - 1][l.key] : null;
    return v === null || v === undefined ? "—" : `${v.toFixed(v < 10 ? 2 : 0)} ${unit}`;
  };
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title}: ` + lines.map((l) => `${l.name} ${latest(l)}`).join(", "));
  const grid = document.createElementNS(svg.namespaceURI, "line");
  for (const [k, v] of Object.entries({ x1: 0, x2: W, y1: H - PAD, y2: H - PAD, class: "axis" })) grid.setAttribute(k, v);
  svg.append(grid);
  for (const l of lines) {
    const pts = points.map((p, i) => (p[l.key] === null || p[l.key] === undefined ? null : `${x(i + offset).toFixed(1)},${y(p[l.key]).toFixed(1)}`)).filter(Boolean);
    if (pts.length < 2) continue;
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("class", "series " + l.color);
    svg.append(line);
  }
  return el("figure", { class: "chart" },
    el("figcaption", {}, el("strong", { text: title }), el("span", { class: "muted", text: ` peak ${max < 1e-6 ? 0 : max.toFixed(max < 10 ? 2 : 0)} ${unit}, last 3 min` })),
    svg,
    el("ul", { class: "legend" }, lines.map((l) => el("li", {}, el("span", { class: "swatch " + l.color, "aria-hidden": "true" }), `${l.name}: ${latest(l)}`))));
}
