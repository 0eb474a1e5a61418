// The restore dialog, shared by the views: asks for a reason, restores through
// the v1 API (role admin; the server refuses others), shows what was restored
// and what was skipped and why. Reasons travel in X-Reason-Encoded (api.js).

import { call, seg } from "./api.js";
import { el } from "./dom.js";

const $ = (id) => document.getElementById(id);
const dialog = $("restore-dialog");
const reasonInput = $("restore-reason");
const result = $("restore-result");
const submit = dialog.querySelector("[data-testid=restore-submit]");
const close = $("restore-close");
let pending = null;

/** Opens the dialog to restore `body` ({audit_id} or {plan_id}) in `map`. */
export function openRestore(body, map, description) {
  pending = { body, map };
  $("restore-target").textContent = description;
  reasonInput.value = "";
  result.replaceChildren();
  submit.hidden = false;
  submit.disabled = false;
  close.textContent = "Cancel";
  dialog.showModal();
  reasonInput.focus();
}

/** Closes the dialog if it is open (the view is left). */
export function closeRestore() {
  if (dialog.open) dialog.close();
}

$("restore-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!pending) return;
  const reason = reasonInput.value.trim();
  if (!reason) { result.textContent = "A reason is required."; return; }
  submit.disabled = true;
  try {
    const r = await call("POST", `/v1/maps/${seg(pending.map)}/restore`, { body: pending.body, reason });
    result.replaceChildren(
      el("p", { text: `Restored ${r.restored.length}, skipped ${r.skipped.length}.` }),
      r.restored.length ? el("ul", {}, r.restored.map((x) => el("li", { text: `restored “${x.key}” at revision ${x.revision}` }))) : null,
      r.skipped.length ? el("ul", {}, r.skipped.map((x) => el("li", { text: `skipped “${x.key}”: ${x.why === "recreated" ? "recreated since (the current value is kept)" : x.why}` }))) : null);
    submit.hidden = true;
    close.textContent = "Close";
    close.focus();
    pending = null;
  } catch (e) {
    result.textContent = `Not restored: ${e.message} (${e.code})`;
    submit.disabled = false;
  }
});
close.addEventListener("click", () => dialog.close());
