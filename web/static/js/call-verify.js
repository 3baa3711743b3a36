// The identity check before joining a call (real-name re-verification): when
// the server refuses a join with verification_required, this dialog asks for
// the authenticator app's code, posts it to /api/auth/verify (which puts the
// check on the consultation's timeline) and lets the page join again.

import { ApiError, post } from "./api.js";
import { busy, checkRequired, errorMessage, handleAuthLoss } from "./ui.js";

export class VerifyPrompt {
  constructor({ consultationId, home, onVerified }) {
    this.consultationId = consultationId;
    this.onVerified = onVerified;
    this.dialog = document.getElementById("verify-dialog");
    this.form = document.getElementById("verify-form");
    this.box = document.getElementById("verify-error");
    this.input = document.getElementById("verify-code");
    this.attempts = 0;
    document.getElementById("verify-back").href = home;
    // Escape would leave the page waiting with no way to join: go back instead.
    this.dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      location.assign(home);
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  open() {
    if (this.dialog.open) return;
    this.box.hidden = true;
    this.input.value = "";
    this.dialog.showModal();
    this.input.focus();
  }

  async submit() {
    if (!checkRequired(this.form, this.box)) return;
    const code = this.input.value.trim();
    await busy(this.form, async () => {
      try {
        await post("/api/auth/verify", { consultation_id: this.consultationId, code });
      } catch (err) {
        if (handleAuthLoss(err)) return;
        this.attempts += 1;
        this.box.textContent = errorMessage(err);
        this.box.dataset.code = err instanceof ApiError ? err.code : "unknown";
        this.box.dataset.attempt = String(this.attempts);
        this.box.hidden = false;
        this.input.value = "";
        this.input.focus();
        return;
      }
      this.dialog.close();
      this.onVerified();
    });
  }
}
