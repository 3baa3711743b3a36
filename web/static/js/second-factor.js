// The login's second step: confirm a new authenticator app (then show the
// recovery codes once), or enter its code. Posts to /api/auth/...

import { ApiError, post } from "./api.js";
import { PAGE, busy, checkRequired, el, errorMessage } from "./ui.js";

const form = document.getElementById("code-form");
const box = document.getElementById("code-error");
const input = document.getElementById("code");
const next = PAGE.next || "/";
let attempts = 0;

function showRecoveryCodes(codes) {
  const list = document.getElementById("recovery-codes");
  list.replaceChildren(...codes.map((code) => el("li", {}, code)));
  document.getElementById("enrol").hidden = true;
  document.getElementById("recovery").hidden = false;
  document.getElementById("recovery-done").href = next;
  document.getElementById("recovery-done").focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!checkRequired(form, box)) return;
  const code = input.value.trim();
  await busy(form, async () => {
    try {
      if (PAGE.mode === "enrol") {
        const { recovery_codes: codes } = await post("/api/auth/enrolment/confirm", { code });
        showRecoveryCodes(codes);
      } else {
        await post("/api/auth/second-factor", { code });
        location.assign(next);
      }
    } catch (err) {
      attempts += 1;
      box.textContent = errorMessage(err);
      box.dataset.code = err instanceof ApiError ? err.code : "unknown";
      box.dataset.attempt = String(attempts);
      box.hidden = false;
      input.value = "";
      input.focus();
    }
  });
});

const print = document.getElementById("recovery-print");
if (print) print.addEventListener("click", () => window.print());

input.focus();
