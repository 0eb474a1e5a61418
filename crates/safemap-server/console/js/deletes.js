// Recent deletes: newest first, live (polls /ui/data/deletes for records newer
// than the last one seen), filterable; Restore per row and per plan.

import { call } from "./api.js";
import { el, field, when, jsonDetails, query } from "./dom.js";
import { closeRestore, openRestore } from "./restore.js";

const POLL_MS = 1500;
const MAX_ROWS = 500;

export function deletesView(ctx) {
  const root = document.getElementById("view-deletes");
  const filters = {};
  let rows = [];          // newest first
  let latestId = null;    // poll for records after this audit id
  let timer = null;
  let loading = false;

  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter deletes" },
    field("f-map", "Map", { placeholder: "any", autocomplete: "off" }),
    field("f-prefix", "Key prefix", { autocomplete: "off" }),
    field("f-actor", "Actor (token name)", { autocomplete: "off" }),
    field("f-reason", "Reason contains", { autocomplete: "off" }),
    field("f-plan", "Plan id", { autocomplete: "off", placeholder: "16 hex digits" }),
    field("f-since", "From", { type: "datetime-local", step: 1 }),
    field("f-until", "To", { type: "datetime-local", step: 1 }),
    el("div", { class: "row" },
      el("button", { type: "submit", text: "Apply filters" }),
      el("button", { type: "button", class: "secondary", text: "Clear", onclick: () => ctx.navigate("#deletes") })));
  const status = el("p", { class: "muted live", id: "deletes-status" });
  const planBar = el("div", { class: "planbar", hidden: true });
  const tbody = el("tbody");
  const table = el("table", { class: "deletes" },
    el("caption", { class: "sr-only", text: "Deleted keys, newest first" }),
    el("thead", {}, el("tr", {},
      ["Time", "Map", "Key", "Previous value", "Revision", "Reason", "Actor", "Trace id", "Plan", "Restore"]
        .map((h) => el("th", { scope: "col", text: h })))),
    tbody);
  const empty = el("p", { class: "muted" });
  // Filters fold away on a phone, where they would fill the first screen.
  const filterBox = el("details", { class: "filterbox", open: window.matchMedia("(min-width: 701px)").matches },
    el("summary", { text: "Filters" }), form);
  root.append(el("h1", { id: "deletes-title", text: "Recent deletes" }), filterBox, status, planBar,
    el("div", { class: "scroll" }, table), empty);

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = (id) => document.getElementById(id).value.trim();
    const iso = (id) => (v(id) ? new Date(v(id)).toISOString() : "");
    ctx.navigate("#deletes" + query({
      map: v("f-map"), prefix: v("f-prefix"), actor: v("f-actor"), reason: v("f-reason"),
      plan_id: v("f-plan"), since: iso("f-since"), until: iso("f-until"),
    }));
  });

  function rowEl(r, fresh) {
    const history = "#history" + query({ map: r.map, key: r.key });
    let action;
    if (!r.restorable) {
      action = el("span", { class: "muted", text: "past retention" });
    } else if (ctx.can.restore) {
      action = el("button", {
        type: "button", "data-testid": "restore-button",
        "aria-label": `Restore ${r.key} in ${r.map}`, text: "Restore",
        onclick: () => openRestore({ audit_id: r.id }, r.map,
          `Put back key “${r.key}” of map “${r.map}” as it was before delete #${r.id}.`),
      });
    } else {
      action = el("span", { class: "muted", text: "—" });
    }
    const cells = [
      ["Time", el("time", { datetime: r.at, text: when(r.at) })],
      ["Map", r.map],
      ["Key", el("a", { href: history, text: r.key, title: "History of this key" })],
      ["Previous value", jsonDetails(r.previous_value)],
      ["Revision", String(r.revision)],
      ["Reason", r.reason || el("span", { class: "muted", text: "none" })],
      ["Actor", r.actor || ""],
      ["Trace id", el("code", { text: r.trace_id || "" })],
      ["Plan", r.plan_id
        ? el("a", { href: "#deletes" + query({ plan_id: r.plan_id }), text: r.plan_id, title: "Deletes of this plan" })
        : ""],
      ["Restore", action],
    ];
    return el("tr", { "data-testid": "delete-row", "data-map": r.map, "data-key": r.key, "data-audit-id": r.id, class: fresh ? "fresh" : null },
      cells.map(([label, c]) => el("td", { "data-label": label }, c)));
  }

  function render() {
    tbody.replaceChildren(...rows.map((r) => rowEl(r, false)));
    empty.hidden = rows.length > 0;
    table.hidden = rows.length === 0;
    empty.textContent = Object.keys(filters).length
      ? "No deletes match these filters."
      : "No deletes yet. Deletes appear here as they happen, newest first.";
    renderPlanBar();
  }

  function renderPlanBar() {
    const plan = filters.plan_id;
    if (!plan) { planBar.hidden = true; return; }
    const mine = rows.filter((r) => r.plan_id === plan);
    const restorable = mine.filter((r) => r.restorable);
    planBar.replaceChildren(el("span", { text: `Plan ${plan}: ${mine.length} delete(s) shown.` }));
    if (ctx.can.restore && restorable.length > 0) {
      const map = restorable[0].map;
      planBar.append(el("button", {
        type: "button", "data-testid": "restore-plan-button",
        text: `Restore all ${restorable.length} of this plan`,
        onclick: () => openRestore({ plan_id: plan }, map,
          `Put back the ${restorable.length} key(s) that plan ${plan} deleted from map “${map}” (keys recreated since are skipped).`),
      }));
    }
    planBar.hidden = false;
  }

  async function load() {
    loading = true;
    try {
      const data = await call("GET", "/ui/data/deletes" + query({ ...filters, limit: MAX_ROWS }));
      rows = data.rows;
      latestId = data.latest_id;
      render();
      status.textContent = `Live: showing ${rows.length} delete(s); updated ${new Date().toLocaleTimeString()}.`;
      ctx.alert("");
    } catch (e) {
      rows = [];
      render();
      ctx.alert("Could not load deletes: " + e.message);
    } finally {
      loading = false;
    }
  }

  async function poll() {
    // A tab in the background does not poll; on return the next poll catches up
    // (it asks for everything after the last id seen).
    if (loading || latestId === null || document.hidden) return;
    try {
      const data = await call("GET", "/ui/data/deletes" + query({ ...filters, after: latestId, limit: MAX_ROWS }));
      latestId = Math.max(latestId, data.latest_id);
      if (data.rows.length) {
        // New rows go on top; rows already shown stay as they are (an opened
        // value stays open, a focused button keeps the focus).
        rows = data.rows.concat(rows).slice(0, MAX_ROWS);
        tbody.prepend(...data.rows.map((r) => rowEl(r, true)));
        while (tbody.children.length > rows.length) tbody.lastChild.remove();
        empty.hidden = true;
        table.hidden = false;
        renderPlanBar();
      }
      status.textContent = `Live: showing ${rows.length} delete(s); updated ${new Date().toLocaleTimeString()}.`;
    } catch (e) {
      status.textContent = "Live updates paused: " + e.message;
    }
  }


  return {
    show(params) {
      for (const k of Object.keys(filters)) delete filters[k];
      for (const k of ["map", "prefix", "actor", "reason", "plan_id", "since", "until"]) {
        if (params.get(k)) filters[k] = params.get(k);
      }
      const set = (id, v) => { document.getElementById(id).value = v || ""; };
      set("f-map", filters.map); set("f-prefix", filters.prefix); set("f-actor", filters.actor);
      set("f-reason", filters.reason); set("f-plan", filters.plan_id);
      const local = (iso) => {
        if (!iso) return "";
        const d = new Date(iso);
        return isNaN(d) ? "" : new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
      };
      set("f-since", local(filters.since)); set("f-until", local(filters.until));
      latestId = null;
      load();
      clearInterval(timer);
      timer = setInterval(poll, POLL_MS);
    },
    hide() {
      clearInterval(timer);
      timer = null;
      closeRestore();
    },
  };
}
