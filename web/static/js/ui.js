// Shared page pieces: translated strings, DOM building (textContent only),
// badges, relative times, form helpers, the toast, and the header (sign out,
// live-update indicator).

import { ApiError, del } from "./api.js";

function readJson(id) {
  const node = document.getElementById(id);
  if (!node) return {};
  try {
    return JSON.parse(node.textContent || "{}");
  } catch {
    return {};
  }
}

// The element with this id (every page module's shorthand).
export const $ = (id) => document.getElementById(id);

export const STRINGS = readJson("tc-strings");
export const PAGE = readJson("tc-page");
export const LOCALE = PAGE.locale || document.documentElement.lang || "zh-CN";

// Translate a key; "%(name)s" placeholders are filled from params.
export function t(key, params = {}) {
  const text = Object.prototype.hasOwnProperty.call(STRINGS, key) ? STRINGS[key] : key;
  return text.replace(/%\((\w+)\)s/g, (_, name) => String(params[name] ?? ""));
}

// Build an element. attrs: plain attributes, plus "class", "dataset", "text",
// "hidden", "disabled", "on" ({event: handler}). Children: nodes or strings
// (strings become text nodes, never HTML).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function stateBadge(state) {
  return el("span", {
    class: `badge badge-state state-${state}`,
    dataset: { state },
    text: t(`state.${state}`),
  });
}

export function urgencyBadge(urgency) {
  return el("span", {
    class: `badge badge-urgency urgency-${urgency}`,
    dataset: { urgency },
    text: t(`urgency.${urgency}`),
  });
}

const relative = new Intl.RelativeTimeFormat(LOCALE, { numeric: "auto", style: "long" });
const dateTime = new Intl.DateTimeFormat(LOCALE, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

export function formatDateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : dateTime.format(date);
}

export function timeAgo(iso, now = Date.now()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const seconds = Math.round((date.getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return t("time.just_now");
  if (abs < 3600) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86400), "day");
}

// A <time> that keeps its "12 minutes ago" current (see refreshTimes).
export function ago(iso) {
  return el("time", {
    class: "ago",
    datetime: iso,
    title: formatDateTime(iso),
    dataset: { ago: iso },
    text: timeAgo(iso),
  });
}

export function refreshTimes() {
  for (const node of document.querySelectorAll("time[data-ago]")) {
    node.textContent = timeAgo(node.dataset.ago);
  }
  for (const node of document.querySelectorAll("[data-due-by]")) tickDeadline(node);
}

// "2 d 5 h", "3 h 20 min", "12 min": whole minutes, rounded up for the time left
// and down for the time overdue (never "0 min overdue": at least 1).
export function formatDuration(seconds, { overdue = false } = {}) {
  const minutes = overdue ? Math.max(1, Math.floor(seconds / 60)) : Math.max(0, Math.ceil(seconds / 60));
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const m = minutes % 60;
  if (d > 0) return h > 0 ? t("duration.days_hours", { d, h }) : t("duration.days", { d });
  if (h > 0) return m > 0 ? t("duration.hours_minutes", { h, m }) : t("duration.hours", { h });
  return t("duration.minutes", { m });
}

// Time left under which a clock is shown as running short.
const SOON_SECONDS = 2 * 3600;

// A consultation's clock against its current deadline (signaling/workflow/deadlines.py):
// time left, or a red "overdue" badge. The server says how many seconds were left
// when it answered (by its own clock); the page counts down from there with its
// monotonic clock, so a badge appears by itself when the deadline passes.
export function deadlineClock(c) {
  if (!c || !c.deadline_kind || c.deadline_seconds_left === null) return null;
  const node = el("span", {
    dataset: {
      deadline: c.deadline_kind,
      dueBy: String(performance.now() + c.deadline_seconds_left * 1000),
    },
    title: t("deadline.due_at", { when: formatDateTime(c.deadline_at) }),
  });
  tickDeadline(node);
  return node;
}

function tickDeadline(node) {
  const left = (Number(node.dataset.dueBy) - performance.now()) / 1000;
  const overdue = left < 0;
  const kind = node.dataset.deadline;
  node.className = overdue
    ? "badge badge-overdue"
    : `deadline-left${left < SOON_SECONDS ? " deadline-soon" : ""}`;
  node.dataset.overdue = String(overdue);
  node.textContent = t(overdue ? `deadline.${kind}_overdue` : `deadline.${kind}_left`, {
    time: formatDuration(Math.abs(left), { overdue }),
  });
}

export function sexAge(patient) {
  const parts = [];
  if (patient && patient.sex) parts.push(t(`sex.${patient.sex}`));
  if (patient && patient.age !== undefined && patient.age !== null) {
    parts.push(t("age", { age: patient.age }));
  }
  return parts.join(" · ");
}

// "Label: value" with the locale's punctuation (a full-width colon in Chinese).
export function pair(label, value) {
  return t("label.pair", { label, value });
}

export function errorMessage(err) {
  if (err instanceof ApiError) {
    const key = `error.${err.code}`;
    if (Object.prototype.hasOwnProperty.call(STRINGS, key)) return t(key);
    if (err.status === 0) return t("error.network");
    if (err.status === 401) return t("error.unauthenticated");
    if (err.status === 403 && /csrf/i.test(err.code)) return t("error.csrf");
    if (err.status === 400) return t("error.invalid");
    if (err.status === 429) return t("error.rate_limited");
    return t("error.unknown");
  }
  return t("error.unknown");
}

// Show an error next to a form and mark the fields the server named.
export function showFormError(form, box, err) {
  clearFormError(form, box);
  box.textContent = errorMessage(err);
  box.hidden = false;
  const fields = err instanceof ApiError ? err.fields : [];
  for (const name of fields) {
    const input = form.elements.namedItem(name);
    if (input && input.setAttribute) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", box.id);
    }
  }
  const first = form.querySelector('[aria-invalid="true"]');
  if (first && first.focus) first.focus();
}

export function clearFormError(form, box) {
  box.hidden = true;
  box.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
  }
}

// Client-side check of required fields, so the server gets sensible requests;
// marks the empty ones and returns false.
export function checkRequired(form, box) {
  clearFormError(form, box);
  const missing = [];
  for (const input of form.querySelectorAll("[required]")) {
    if (input.disabled) continue;
    const empty =
      input.type === "radio"
        ? !form.querySelector(`input[name="${input.name}"]:checked`)
        : !String(input.value || "").trim();
    if (empty) missing.push(input);
  }
  if (missing.length === 0) return true;
  for (const input of missing) input.setAttribute("aria-invalid", "true");
  box.textContent = t("error.invalid");
  box.hidden = false;
  missing[0].focus();
  return false;
}

// Disable a form's buttons while a request runs (no double submits).
export async function busy(form, fn) {
  const buttons = [...form.querySelectorAll("button")];
  for (const b of buttons) b.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } finally {
    for (const b of buttons) b.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

let toastTimer = null;
export function toast(message, kind = "ok") {
  const node = document.getElementById("toast");
  if (!node) return;
  node.textContent = message;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    node.hidden = true;
  }, 4000);
}

export function replaceChildren(list, items, empty) {
  list.replaceChildren(...items);
  if (empty) empty.hidden = items.length > 0;
}

// The link to a consultation's video call (accepted and live consultations).
export function callLink(c) {
  return el("a", {
    class: `btn btn-small ${c.state === "live" ? "btn-primary" : "btn-primary-quiet"} call-link`,
    href: `/consultations/${encodeURIComponent(c.id)}/call`,
    dataset: { action: "call" },
    text: c.state === "live" ? t("action.join_live") : t("action.join"),
  });
}

// The link to a consultation's own page (request, records, timeline, opinion).
export function consultationLink(c, { label = t("action.open"), primary = false } = {}) {
  return el("a", {
    class: `btn btn-small ${primary ? "btn-primary" : ""} consultation-link`,
    href: `/consultations/${encodeURIComponent(c.id)}`,
    dataset: { action: "open" },
    text: label,
  });
}

export function option(value, label, extra = {}) {
  return el("option", { value, ...extra, text: label });
}

// Dialog helpers: [data-close] buttons close their dialog.
export function wireDialog(dialog) {
  for (const button of dialog.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => dialog.close());
  }
  return dialog;
}

// Show a modal <dialog> whose form has method="dialog"; resolves with the value
// of the button that closed it ("" for Escape).
export function ask(dialog) {
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
  });
}

// A form whose submit checks the required fields, disables its buttons while
// action(form.elements) runs, and shows the server's error in box (or sends
// the user to the login page when the session has ended); then after(), if
// given, runs whether the action succeeded or not.
export function onSubmit(form, box, action, after = null) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!checkRequired(form, box)) return;
    await busy(form, async () => {
      try {
        await action(form.elements);
      } catch (err) {
        if (!handleAuthLoss(err)) showFormError(form, box, err);
      }
    });
    if (after) await after();
  });
}

// The dialogs that ask for a reason (cancel a request, decline one): markup
// #NAME-dialog holding #NAME-form (a required "reason" field) and #NAME-error.
// open(subject) shows it for one item (prepare(subject) fills in what the
// dialog says about it); on submit send(subject, reason) runs, the dialog closes
// when it succeeds, and then(subject) runs either way (to reload the list).
export function reasonDialog(name, { send, prepare = () => {}, then = async () => {} }) {
  const dialog = wireDialog($(`${name}-dialog`));
  const form = $(`${name}-form`);
  const box = $(`${name}-error`);
  let subject = null;
  onSubmit(
    form,
    box,
    async (fields) => {
      await send(subject, fields.namedItem("reason").value.trim());
      dialog.close();
    },
    () => then(subject),
  );
  return {
    open(item) {
      subject = item;
      form.reset();
      box.hidden = true;
      prepare(item);
      dialog.showModal();
    },
  };
}

export function setPushStatus(status) {
  const node = document.getElementById("push-status");
  if (!node) return;
  node.dataset.status = status;
  node.title = status === "online" ? t("push.online") : t("push.offline");
  node.textContent = status === "offline" ? t("push.offline") : "";
}

// Set once the page is on its way to the login page (the user signed out, or the
// session ended): a list refused meanwhile, or the live-updates socket the
// server closes, must not send it there a second time, aborting the first.
let leaving = false;

function wireHeader() {
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      logout.disabled = true;
      leaving = true;
      try {
        await del("/api/session");
      } catch {
        // Signed out already (or the server is gone): go to the login page anyway.
      }
      location.assign("/login");
    });
  }
  setInterval(refreshTimes, 30000);
}

// Run load() (a page fetching its lists); a failure sends the user to the
// login page when the session has ended, else says the network failed.
export function refresh(load) {
  return load().catch((err) => {
    if (!handleAuthLoss(err)) toast(t("error.network"), "error");
  });
}

// Sends the user to the login page when the session has ended.
export function handleAuthLoss(err) {
  if (err instanceof ApiError && err.status === 401) {
    sessionEnded();
    return true;
  }
  return false;
}

// Whether the page is on its way to the login page: a live-updates socket it
// would open now is refused (the session is ended or ending), which the
// browser logs.
export function leavingPage() {
  return leaving;
}

// The session ended (a request refused with 401, or the live-updates socket
// closed for it): to the login page, back here after it; once only (the user
// may have signed out on this page, or a list and the socket both said so).
export function sessionEnded() {
  if (leaving) return;
  leaving = true;
  const next = encodeURIComponent(location.pathname);
  location.assign(`/login?next=${next}`);
}

wireHeader();
