// Login page: posts the form as JSON to /api/session, then goes on.

import { ApiError, post } from "./api.js";
import { PAGE, busy, checkRequired, errorMessage } from "./ui.js";

const form = document.getElementById("login-form");
const box = document.getElementById("login-error");
let attempts = 0;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!checkRequired(form, box)) return;
  const username = form.elements.namedItem("username").value.trim();
  const password = form.elements.namedItem("password").value;
  await busy(form, async () => {
    try {
      const { second_factor: owed } = await post("/api/session", { username, password });
      const next = PAGE.next || "/";
      // Physicians confirm with their authenticator app (or enrol one) first.
      location.assign(owed ? `/login/second-factor?next=${encodeURIComponent(next)}` : next);
    } catch (err) {
      box.textContent = errorMessage(err);
      attempts += 1;
      box.dataset.code = err instanceof ApiError ? err.code : "unknown";
      box.dataset.attempt = String(attempts);
      box.hidden = false;
      const password_ = form.elements.namedItem("password");
      password_.value = "";
      password_.focus();
    }
  });
});

document.getElementById("username").focus();
