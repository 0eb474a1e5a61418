// The console's shell: sign-in, who am I, navigation between views.
// Views are hidden, not removed, so each keeps its state while another shows.

import { call, token, setUnauthenticatedHandler } from "./api.js";
import { deletesView } from "./deletes.js";
import { plansView } from "./plans.js";
import { mapsView } from "./maps.js";
import { historyView } from "./history.js";
import { startSampler, stopSampler } from "./charts.js";

const $ = (id) => document.getElementById(id);

const ctx = {
  me: null,
  // What the token may do (GET /v1/whoami); the server checks again on every call.
  can: { restore: false, plan: false },
  alert(message) {
    const a = $("alert");
    a.textContent = message;
    a.hidden = !message;
  },
  navigate(hash) { location.hash = hash; },
};

const views = {
  deletes: deletesView(ctx),
  plans: plansView(ctx),
  maps: mapsView(ctx),
  history: historyView(ctx),
};
let current = null;

/** `#name?a=b` → ["name", URLSearchParams]. */
function parseHash() {
  const h = location.hash.replace(/^#/, "");
  const [name, q] = h.split("?");
  return [name || "deletes", new URLSearchParams(q || "")];
}

function route() {
  if (!ctx.me) return;
  let [name, params] = parseHash();
  if (!views[name] || (name === "plans" && !ctx.can.plan)) name = "deletes";
  for (const [n, v] of Object.entries(views)) {
    const section = $("view-" + n);
    if (n === name) {
      section.hidden = false;
      v.show(params);
    } else if (!section.hidden) {
      section.hidden = true;
      v.hide();
    }
  }
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === "#" + name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (current !== name) $("main").focus();
  current = name;
}

function showLogin(message) {
  ctx.me = null;
  stopSampler();
  for (const n of Object.keys(views)) {
    if (!$("view-" + n).hidden) { $("view-" + n).hidden = true; views[n].hide(); }
  }
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  ctx.alert(message || "");
  $("token").focus();
}

async function signIn(t) {
  token.set(t);
  try {
    ctx.me = await call("GET", "/v1/whoami");
  } catch (e) {
    token.clear();
    showLogin(e.status === 401 ? "That token is not known to this server." : "Sign-in failed: " + e.message);
    return;
  }
  const roles = ctx.me.roles;
  ctx.can.restore = roles.includes("admin");
  ctx.can.plan = roles.includes("admin") || roles.includes("delete");
  $("nav-plans").hidden = !ctx.can.plan;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = `${ctx.me.name} (${roles.join(", ")})`;
  ctx.alert("");
  current = null;
  startSampler();
  route();
}

setUnauthenticatedHandler(() => {
  token.clear();
  showLogin("The server no longer accepts this token (revoked?). Sign in again.");
});

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  $("token").value = "";
  if (t) signIn(t);
});
$("logout").addEventListener("click", () => { token.clear(); showLogin(""); });
window.addEventListener("hashchange", route);

const saved = token.get();
if (saved) signIn(saved); else showLogin("");
