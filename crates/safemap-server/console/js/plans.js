// Delete plans: choose keys by selectors, see the dry run, execute only after
// typing the count and giving a reason, then the report.
// (Cascades across maps arrive with references; the server has none yet.)

import { call, seg } from "./api.js";
import { el, field, when, query } from "./dom.js";

export function plansView(ctx) {
  const root = document.getElementById("view-plans");
  const mapList = el("datalist", { id: "plan-map-names" });
  const form = el("form", { class: "stack narrow", "aria-describedby": "plan-help" },
    el("p", { id: "plan-help", class: "help",
      text: "Selectors combine with AND; give at least one. Creating a plan deletes nothing: it shows what would be deleted." }),
    field("plan-map", "Map", { required: true, list: "plan-map-names", autocomplete: "off", "data-testid": "plan-map" }),
    field("plan-prefix", "Key prefix", { autocomplete: "off", "data-testid": "plan-prefix" }),
    field("plan-keys", "Keys (one per line)", { rows: 3, "data-testid": "plan-keys" }, "textarea"),
    el("fieldset", {},
      el("legend", { text: "Where the value…" }),
      field("plan-pointer", "JSON pointer", { placeholder: "/status", autocomplete: "off" }),
      field("plan-equals", "equals", { placeholder: "archived", autocomplete: "off", "aria-describedby": "plan-equals-help" }),
      el("p", { id: "plan-equals-help", class: "help", text: "JSON (3, true, null, \"3\"); anything else is taken as text." })),
    el("button", { type: "submit", "data-testid": "plan-create", text: "Dry run" }),
    mapList);
  const dryRun = el("section", { id: "plan-dryrun", "aria-live": "polite" },
    el("p", { class: "muted", text: "The dry run appears here: what the plan would delete, and what deny rules keep." }));
  root.append(el("h1", { id: "plans-title", text: "Delete plans" }),
    el("div", { class: "plans-layout" }, form, dryRun));

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = (id) => document.getElementById(id).value.trim();
    const map = v("plan-map");
    const body = {};
    if (v("plan-prefix")) body.prefix = v("plan-prefix");
    const keys = v("plan-keys").split("\n").map((k) => k.trim()).filter(Boolean);
    if (keys.length) body.keys = keys;
    if (v("plan-pointer") && !v("plan-pointer").startsWith("/")) {
      ctx.alert(`A JSON pointer starts with “/”: /${v("plan-pointer")} rather than ${v("plan-pointer")}.`);
      return;
    }
    if (v("plan-pointer") || v("plan-equals")) {
      // JSON when it parses (3, true, null, "x", {...}); otherwise the text itself,
      // so that a bare word such as archived means the string "archived".
      let equals;
      try { equals = JSON.parse(v("plan-equals")); } catch { equals = v("plan-equals"); }
      body.where = { pointer: v("plan-pointer"), equals };
    }
    if (!map) { ctx.alert("Name the map to plan deletes in."); return; }
    if (!Object.keys(body).length) { ctx.alert("Give at least one selector: a prefix, keys or a where condition."); return; }
    try {
      const plan = await call("POST", `/v1/maps/${seg(map)}/delete-plans`, { body });
      ctx.alert("");
      showPlan(map, plan, body);
    } catch (e) {
      ctx.alert(`No plan: ${e.message} (${e.code})`);
    }
  });

  function showPlan(map, plan, body) {
    const selectors = [
      body.prefix !== undefined ? `keys starting with “${body.prefix}”` : null,
      body.keys ? `${body.keys.length} listed key(s)` : null,
      body.where ? `value at ${body.where.pointer} equal to ${JSON.stringify(body.where.equals)}` : null,
    ].filter(Boolean).join(" and ");
    const parts = [
      el("h2", { text: `Dry run of plan ${plan.plan_id}` }),
      el("p", { class: "muted", text: `Selected: ${selectors}.` }),
      el("p", {}, "Would delete ", el("strong", { "data-testid": "plan-count", text: String(plan.count) }),
        ` key(s) of map “${map}” as of revision ${plan.at_revision}. Nothing is deleted yet. The plan expires ${when(plan.expires_at)}.`),
    ];
    if (plan.sample.length) {
      parts.push(el("h3", { text: plan.count > plan.sample.length ? `First ${plan.sample.length} of ${plan.count}` : "Keys" }),
        el("ul", { class: "keys" }, plan.sample.map((k) => el("li", {}, el("code", { text: k })))));
    }
    if (plan.vetoed.length) {
      parts.push(el("h3", { text: `Kept by deny rules (${plan.vetoed.length})` }),
        el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Key" }), el("th", { scope: "col", text: "Rule" }))),
          el("tbody", {}, plan.vetoed.map((x) => el("tr", {}, el("td", {}, el("code", { text: x.key })), el("td", { text: x.rule }))))));
    }
    const result = el("div", { "data-testid": "plan-result", role: "status" });
    if (plan.count > 0) parts.push(executeForm(map, plan, result));
    else parts.push(el("p", { class: "muted", text: "Nothing to delete: no key matches." }));
    parts.push(result);
    dryRun.replaceChildren(...parts);
    dryRun.querySelector("h2").setAttribute("tabindex", "-1");
    dryRun.querySelector("h2").focus({ preventScroll: true });
  }

  function executeForm(map, plan, result) {
    const reason = el("input", { id: "plan-reason", "data-testid": "plan-reason", maxlength: 512, autocomplete: "off", required: true });
    const confirm = el("input", { id: "plan-confirm", "data-testid": "plan-confirm-input", inputmode: "numeric", autocomplete: "off", required: true });
    const execute = el("button", { type: "submit", "data-testid": "plan-execute", class: "danger", disabled: true,
      "aria-describedby": "plan-execute-help", text: `Delete ${plan.count} key(s)` });
    const hint = el("p", { id: "plan-execute-help", class: "help",
      text: `Enabled once you give a reason and type ${plan.count}. Keys changed since this dry run are skipped, not deleted; every delete can be restored within the map's retention.` });
    // Execute stays disabled until the typed count equals the plan's and a reason is given.
    const check = () => { execute.disabled = !(confirm.value.trim() === String(plan.count) && reason.value.trim()); };
    reason.addEventListener("input", check);
    confirm.addEventListener("input", check);
    const form = el("form", { class: "stack narrow confirm" },
      el("div", { class: "field" }, el("label", { for: "plan-reason", text: "Reason (recorded with every delete)" }), reason),
      el("div", { class: "field" }, el("label", { for: "plan-confirm", text: `Type ${plan.count} to confirm` }), confirm),
      execute, hint);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (execute.disabled) return;
      execute.disabled = true;
      try {
        const r = await call("POST", `/v1/maps/${seg(map)}/delete-plans/${seg(plan.plan_id)}/execute`,
          { reason: reason.value.trim(), headers: { "X-Confirm-Count": String(plan.count) } });
        form.remove();
        result.replaceChildren(
          el("p", { text: `Deleted ${r.deleted} key(s); ${r.conflicts.length} skipped because they changed since the plan.` }),
          r.conflicts.length ? el("ul", {}, r.conflicts.map((c) => el("li", { text: `“${c.key}”: planned at revision ${c.planned_revision}, now ${c.current_revision ?? "absent"}` }))) : null,
          r.deleted ? el("p", {}, el("a", { href: "#deletes" + query({ plan_id: plan.plan_id }), text: "See these deletes (and restore them) in Recent deletes" })) : null);
      } catch (e) {
        result.textContent = `Not executed: ${e.message} (${e.code})`;
        check();
      }
    });
    return form;
  }

  return {
    async show(params) {
      if (params.get("map")) document.getElementById("plan-map").value = params.get("map");
      try {
        const data = await call("GET", "/ui/data/maps");
        mapList.replaceChildren(...data.maps.map((m) => el("option", { value: m.name })));
      } catch { /* the list only helps typing */ }
    },
    hide() {},
  };
}
