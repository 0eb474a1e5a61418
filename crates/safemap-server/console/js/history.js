// A key's history: its current value and revision, and every audit record of it.

import { call, seg } from "./api.js";
import { el, field, when, jsonDetails, query } from "./dom.js";
import { closeRestore, openRestore } from "./restore.js";

const PAGES = 10; // at most 10 000 records

export function historyView(ctx) {
  const root = document.getElementById("view-history");
  const form = el("form", { class: "filters", "aria-label": "Choose a key" },
    field("h-map", "Map", { required: true, autocomplete: "off" }),
    field("h-key", "Key", { required: true, autocomplete: "off" }),
    el("div", { class: "row" }, el("button", { type: "submit", text: "Show history" })));
  const out = el("div", { "aria-live": "polite" });
  root.append(el("h1", { id: "history-title", text: "Key history" }), form, out,
    el("p", { class: "muted", text: "Referrers will be listed here once the server has references." }));

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = (id) => document.getElementById(id).value.trim();
    ctx.navigate("#history" + query({ map: v("h-map"), key: v("h-key") }));
  });

  async function load(map, key) {
    out.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    let current;
    try {
      const e = await call("GET", `/v1/maps/${seg(map)}/keys/${seg(key)}`);
      current = el("p", {}, `Now: revision ${e.revision}, version ${e.version}, value `, jsonDetails(e.value));
    } catch (e) {
      current = el("p", { text: e.status === 404 ? "Now: absent (deleted, or never written)." : "Current value unavailable: " + e.message });
    }
    const records = [];
    let after = "";
    try {
      for (let i = 0; i < PAGES; i++) {
        const page = await call("GET", "/v1/audit" + query({ map, key, after, limit: 1000 }));
        records.push(...page.records);
        if (page.next === null) break;
        after = page.next;
      }
    } catch (e) {
      ctx.alert("Could not load the history: " + e.message);
    }
    records.reverse();
    // The audit API carries no values; the console's delete view has each
    // delete's previous value and whether it is still restorable.
    const deletes = new Map();
    try {
      const d = await call("GET", "/ui/data/deletes" + query({ map, key }));
      for (const r of d.rows) deletes.set(r.id, r);
    } catch { /* the history stands without them */ }
    const action = (r) => {
      const d = deletes.get(r.id);
      if (r.op !== "delete" || !d) return "";
      if (!d.restorable) return el("span", { class: "muted", text: "past retention" });
      if (!ctx.can.restore) return "";
      return el("button", {
        type: "button", "data-testid": "restore-button", "aria-label": `Restore delete #${r.id}`, text: "Restore",
        onclick: () => openRestore({ audit_id: r.id }, map, `Put back key “${key}” of map “${map}” as it was before delete #${r.id}.`),
      });
    };
    out.replaceChildren(
      el("h2", {}, `“${key}” in ${map}`), current,
      records.length
        ? el("div", { class: "scroll" }, el("table", {},
          el("caption", { class: "sr-only", text: "Audit records of this key, newest first" }),
          el("thead", {}, el("tr", {}, ["Time", "Operation", "Revision", "Previous revision", "Value removed", "Reason", "Actor", "Trace id", "Plan", "Restore"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, records.map((r) => el("tr", {},
            el("td", { "data-label": "Time" }, el("time", { datetime: r.at, text: when(r.at) })),
            el("td", { "data-label": "Operation", text: r.op }),
            el("td", { "data-label": "Revision", text: String(r.revision) }),
            el("td", { "data-label": "Previous revision", text: r.previous_revision ?? "—" }),
            el("td", { "data-label": "Value removed" }, r.op === "delete" && deletes.has(r.id) ? jsonDetails(deletes.get(r.id).previous_value) : ""),
            el("td", { "data-label": "Reason", text: r.reason ?? "" }),
            el("td", { "data-label": "Actor", text: r.actor ?? "" }),
            el("td", { "data-label": "Trace id" }, el("code", { text: r.trace_id ?? "" })),
            el("td", { "data-label": "Plan", text: r.plan_id ?? "" }),
            el("td", { "data-label": "Restore" }, action(r)))))))
        : el("p", { class: "muted", text: "No audit records of this key are held (past the journal's retention, or never written)." }));
  }

  return {
    show(params) {
      const map = params.get("map") || "", key = params.get("key") || "";
      document.getElementById("h-map").value = map;
      document.getElementById("h-key").value = key;
      if (map && key) load(map, key); else out.replaceChildren();
    },
    hide() { closeRestore(); },
  };
}
