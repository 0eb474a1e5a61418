// Maps: live charts of the whole server, then each map's entry count, deletes
// by outcome, breaker state and policy.

import { el, duration, short } from "./dom.js";
import { OUTCOME_LINES, chart, latestMaps, mapRates, onSample, rates } from "./charts.js";

export function mapsView(ctx) {
  const root = document.getElementById("view-maps");
  const charts = el("div", { class: "charts" });
  const list = el("div", { class: "maps" });
  root.append(el("h1", { id: "maps-title", text: "Maps" }),
    el("h2", { text: "Activity (all maps, per second)" }), charts,
    el("h2", { text: "Each map" }), list);
  let unsubscribe = null;

  function breaker(m) {
    const b = m.breaker;
    if (!b) {
      return [el("span", { class: "badge ok", "data-testid": "breaker-state", "data-map": m.name, text: "closed" }),
        el("span", { class: "muted", text: " no breaker configured" })];
    }
    const state = el("span", { class: "badge " + (b.open ? "bad" : "ok"), "data-testid": "breaker-state", "data-map": m.name, text: b.open ? "open" : "closed" });
    const detail = `${b.in_window} of ${b.max} deletes in the last ${duration(b.window_seconds)}` +
      (b.open && b.retry_after_seconds !== null ? `; reopens in ${duration(b.retry_after_seconds)}` : "") +
      `; tripped ${b.trips} time(s)`;
    return [state, el("span", { text: " " + detail })];
  }

  function card(m) {
    const d = m.deletes;
    const deny = m.policy.deny.length
      ? el("ul", {}, m.policy.deny.map((r) => el("li", {}, el("code", { text: r.name }), `: value at ${r.pointer} equals ${short(r.equals)}`)))
      : el("span", { class: "muted", text: "none" });
    return el("article", { class: "card", "aria-labelledby": "map-" + m.name },
      el("h3", { id: "map-" + m.name }, m.name),
      el("dl", {},
        el("dt", { text: "Entries" }), el("dd", { text: String(m.entries) }),
        el("dt", { text: "Deletes" }), el("dd", { text: `since start: ${d.deleted} deleted, ${d.vetoed} vetoed, ${d.breaker} refused by the breaker, ${d.mismatch} revision mismatch, ${d.not_found} not found, ${d.referenced} still referenced` }),
        el("dt", { text: "Breaker" }), el("dd", {}, breaker(m)),
        el("dt", { text: "Retention" }), el("dd", { text: duration(m.policy.retention_seconds) }),
        el("dt", { text: "Deny rules" }), el("dd", {}, deny)),
      chart(`Deletes in ${m.name} by outcome`, "/s", OUTCOME_LINES, mapRates(m.name)),
      el("p", {}, el("a", { href: `#deletes?map=${encodeURIComponent(m.name)}`, text: `Recent deletes in ${m.name}` })));
  }

  function render() {
    const pts = rates();
    charts.replaceChildren(
      chart("Reads", "/s", [{ name: "reads", key: "reads", color: "c1" }], pts),
      chart("Writes", "/s", [{ name: "writes", key: "writes", color: "c2" }], pts),
      chart("Deletes by outcome", "/s", OUTCOME_LINES, pts),
      chart("fsync latency (mean)", "ms", [{ name: "fsync", key: "fsyncMs", color: "c1" }], pts));
    if (latestMaps) {
      list.replaceChildren(...(latestMaps.maps.length
        ? latestMaps.maps.map(card)
        : [el("p", { class: "muted", text: "No maps yet: a map appears with its first write." })]));
    }
  }

  return {
    show() { render(); unsubscribe = onSample(render); },
    hide() { if (unsubscribe) unsubscribe(); unsubscribe = null; },
  };
}
