// Specialist queue: waiting requests of my departments (accept / decline) and my
// own accepted, live and ended consultations. Kept current by server push.

import { get, post } from "./api.js";
import { reloadOnPush } from "./push.js";
import {
  $,
  PAGE,
  ago,
  callLink,
  consultationLink,
  deadlineClock,
  el,
  errorMessage,
  handleAuthLoss,
  pair,
  reasonDialog,
  refresh,
  replaceChildren,
  sexAge,
  stateBadge,
  t,
  toast,
  urgencyBadge,
} from "./ui.js";

const JOINABLE = new Set(["accepted", "live"]);
// Signed and referred ones stay listed: their author may add a signed addendum.
const MINE = new Set(["accepted", "live", "ended", "signed", "referred"]);
const me = PAGE.account || {};

const queueList = $("queue-list");
const mineList = $("mine-list");
const declineDialog = reasonDialog("decline", {
  prepare: (c) => {
    $("decline-summary").textContent = `${c.requesting_institution.name} · ${c.reason}`;
  },
  send: async (c, reason) => {
    await post(`/api/consultations/${encodeURIComponent(c.id)}/decline`, { reason });
    toast(t("done.declined"));
  },
  then: () => load().catch(() => {}),
});

function facts(c) {
  return el(
    "dl",
    { class: "item-body" },
    el("dt", { text: t("label.reason") }),
    el("dd", { text: c.reason }),
    el("dt", { text: t("label.question") }),
    el("dd", { text: c.question }),
  );
}

function itemHead(c, withState) {
  return el(
    "div",
    { class: "item-head" },
    withState ? stateBadge(c.state) : null,
    urgencyBadge(c.urgency),
    el("span", { class: "item-title", text: c.requesting_institution.name }),
    el("span", { class: "item-sub", text: c.department.name }),
  );
}

function itemMeta(c) {
  return el(
    "div",
    { class: "item-meta" },
    deadlineClock(c),
    el("span", { text: pair(t("label.patient"), sexAge(c.patient)) }),
    el("span", {}, `${t("label.requested")} `, ago(c.created_at)),
    c.escalated ? el("span", { class: "text-warn", text: t("label.escalated") }) : null,
  );
}

// Why an accept failed, by consultation id: kept across re-renders (a push can
// redraw the list while the request is out), cleared by the next attempt.
const acceptErrors = new Map();

async function accept(c, button) {
  acceptErrors.delete(c.id);
  button.closest("li")?.querySelector(".item-error")?.remove();
  button.disabled = true;
  try {
    await post(`/api/consultations/${encodeURIComponent(c.id)}/accept`);
    toast(t("done.accepted"));
    await load();
  } catch (err) {
    if (handleAuthLoss(err)) return;
    button.disabled = false;
    // Shown in the item itself: the doctor should see why this one failed.
    acceptErrors.set(c.id, errorMessage(err));
    const item = queueList.querySelector(`li[data-consultation-id="${CSS.escape(c.id)}"]`);
    if (item && !item.querySelector(".item-error")) item.append(acceptError(c.id));
    if (err.status === 404 || err.status === 409) await load();
  }
}

function acceptError(id) {
  const text = acceptErrors.get(id);
  return text ? el("p", { class: "item-error", role: "alert", text }) : null;
}

function queueItem(c) {
  const acceptButton = el("button", {
    type: "button",
    class: "btn btn-primary btn-small",
    dataset: { action: "accept" },
    text: t("action.accept"),
  });
  acceptButton.addEventListener("click", () => accept(c, acceptButton));
  const declineButton = el("button", {
    type: "button",
    class: "btn btn-small btn-danger-quiet",
    dataset: { action: "decline" },
    text: t("action.decline"),
    on: { click: () => declineDialog.open(c) },
  });
  const addressed =
    c.target_specialist_id && c.target_specialist_id === me.id
      ? el("span", { class: "tag tag-info", text: t("label.addressed_to_you") })
      : null;
  return el(
    "li",
    {
      class: `item urgency-edge-${c.urgency}${c.escalated ? " item-escalated" : ""}${c.overdue ? " item-overdue" : ""}`,
      dataset: { consultationId: c.id, state: c.state },
    },
    itemHead(c, c.escalated),
    itemMeta(c),
    facts(c),
    el("div", { class: "item-actions" }, addressed, declineButton, acceptButton),
    acceptError(c.id),
  );
}

function mineItem(c) {
  const open =
    c.state === "ended"
      ? consultationLink(c, { label: t("action.write_opinion"), primary: true })
      : consultationLink(c);
  return el(
    "li",
    {
      class: `item${c.state === "signed" || c.state === "referred" ? " item-closed" : ""}${c.overdue ? " item-overdue" : ""}`,
      dataset: { consultationId: c.id, state: c.state },
    },
    itemHead(c, true),
    itemMeta(c),
    facts(c),
    el("div", { class: "item-actions" }, JOINABLE.has(c.state) ? callLink(c) : null, open),
  );
}

async function load() {
  const [queue, all] = await Promise.all([get("/api/queue"), get("/api/consultations")]);
  replaceChildren(queueList, queue.consultations.map(queueItem), $("queue-empty"));
  $("queue-count").textContent = String(queue.consultations.length);
  const mine = all.consultations
    .filter((c) => MINE.has(c.state) && c.assigned_specialist && c.assigned_specialist.id === me.id)
    .sort((a, b) => b.updated_at.localeCompare(a.updated_at));
  replaceChildren(mineList, mine.map(mineItem), $("mine-empty"));
}

async function start() {
  await refresh(load);
  reloadOnPush(() => refresh(load));
}

start();
