// Choosing a new password: forced after an administrator's reset (and for a new
// account), or by choice. Posts to /api/session/password, then goes home.

import { post } from "./api.js";
import { $, onSubmit, showFormError, t } from "./ui.js";
import { ApiError } from "./api.js";

const form = $("password-form");
const box = $("password-error");

onSubmit(form, box, async (fields) => {
  const current = fields.namedItem("current_password").value;
  const fresh = fields.namedItem("new_password").value;
  if (fresh !== fields.namedItem("repeat_password").value) {
    showFormError(form, box, new ApiError(400, "password_mismatch", "", ["repeat_password"]));
    box.textContent = t("password.mismatch");
    return;
  }
  await post("/api/session/password", { current_password: current, new_password: fresh });
  location.assign("/");
});

$("current-password").focus();
