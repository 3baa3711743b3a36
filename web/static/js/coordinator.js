// Consultation centre: waiting and escalated requests with assignment, the
// accepted/live overview, and the duty roster.

import { del, get, post } from "./api.js";
import { reloadOnPush } from "./push.js";
import {
  $,
  PAGE,
  ago,
  busy,
  deadlineClock,
  el,
  errorMessage,
  formatDateTime,
  handleAuthLoss,
  onSubmit,
  option,
  pair,
  refresh,
  replaceChildren,
  sexAge,
  stateBadge,
  t,
  toast,
  urgencyBadge,
} from "./ui.js";

const ACTIVE = new Set(["accepted", "live"]);
const me = PAGE.account || {};

const waitingList = $("waiting-list");
const activeList = $("active-list");
const rosterBody = $("roster-body");
const rosterForm = $("roster-form");
const rosterDepartment = $("ro-department");
const rosterSpecialist = $("ro-specialist");

let specialistsCache = new Map();

async function specialists(departmentId) {
  if (!specialistsCache.has(departmentId)) {
    const path = `/api/departments/${encodeURIComponent(departmentId)}/specialists`;
    specialistsCache.set(
      departmentId,
      get(path).then((r) => r.specialists),
    );
  }
  return specialistsCache.get(departmentId);
}

function specialistLabel(s) {
  const notes = [];
  if (s.title) notes.push(s.title);
  notes.push(s.eligible ? t("label.years", { years: s.practice_years }) : t("label.not_eligible"));
  if (s.on_duty) notes.push(t("label.on_duty"));
  return `${s.eligible ? "✓ " : ""}${s.display_name} — ${notes.join(", ")}`;
}

// What the coordinator has chosen but not yet sent, by consultation id: a pushed
// change re-renders the lists, and must not undo a choice being made.
const choices = new Map();

// An "assign to" control; only eligible specialists (>= 3 years) can be chosen.
function assignControl(c, list, label) {
  const select = el(
    "select",
    { class: "select-small", "aria-label": t("label.specialist") },
    option("", t("label.choose_specialist")),
  );
  const sorted = [...list].sort(
    (a, b) => Number(b.on_duty) - Number(a.on_duty) || Number(b.eligible) - Number(a.eligible),
  );
  for (const s of sorted) {
    if (c.assigned_specialist && c.assigned_specialist.id === s.id) continue;
    select.append(
      option(s.id, specialistLabel(s), {
        disabled: !s.eligible,
        dataset: { eligible: String(s.eligible), onDuty: String(s.on_duty) },
      }),
    );
  }
  if (choices.has(c.id)) select.value = choices.get(c.id);
  select.addEventListener("change", () => choices.set(c.id, select.value));
  const button = el("button", { type: "submit", class: "btn btn-small btn-primary", text: label });
  const error = el("p", { class: "item-error", role: "alert", hidden: true });
  const form = el("form", { class: "assign", method: "post", novalidate: true }, select, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!select.value) {
      select.setAttribute("aria-invalid", "true");
      select.focus();
      return;
    }
    await busy(form, async () => {
      try {
        await post(`/api/consultations/${encodeURIComponent(c.id)}/assign`, {
          specialist_id: select.value,
        });
        choices.delete(c.id);
        toast(t("done.assigned"));
        await load();
      } catch (err) {
        if (handleAuthLoss(err)) return;
        error.textContent = errorMessage(err);
        error.hidden = false;
      }
    });
  });
  return el("div", { class: "item-actions" }, form, error);
}

function waitingItem(c, list) {
  return el(
    "li",
    {
      class: `item urgency-edge-${c.urgency}${c.escalated ? " item-escalated" : ""}${c.overdue ? " item-overdue" : ""}`,
      dataset: { consultationId: c.id, state: c.state },
    },
    el(
      "div",
      { class: "item-head" },
      stateBadge(c.state),
      urgencyBadge(c.urgency),
      el("span", { class: "item-title", text: c.department.name }),
      el("span", { class: "item-sub", text: c.requesting_institution.name }),
    ),
    el(
      "div",
      { class: "item-meta" },
      deadlineClock(c),
      el("span", { text: pair(t("label.patient"), sexAge(c.patient)) }),
      el("span", {}, `${t("label.requested")} `, ago(c.created_at)),
      c.escalated ? el("span", { class: "text-warn", text: t("label.escalated") }) : null,
    ),
    el(
      "dl",
      { class: "item-body" },
      el("dt", { text: t("label.reason") }),
      el("dd", { text: c.reason }),
      el("dt", { text: t("label.question") }),
      el("dd", { text: c.question }),
    ),
    assignControl(c, list, t("action.assign")),
  );
}

function activeItem(c, list) {
  const who = c.assigned_specialist
    ? `${c.assigned_specialist.display_name}${c.assigned_specialist.title ? ` (${c.assigned_specialist.title})` : ""}`
    : t("label.unassigned");
  return el(
    "li",
    { class: `item${c.overdue ? " item-overdue" : ""}`, dataset: { consultationId: c.id, state: c.state } },
    el(
      "div",
      { class: "item-head" },
      stateBadge(c.state),
      urgencyBadge(c.urgency),
      el("span", { class: "item-title", text: c.department.name }),
      el("span", { class: "item-sub", text: c.requesting_institution.name }),
    ),
    el(
      "div",
      { class: "item-meta" },
      deadlineClock(c),
      el("span", { text: pair(t("label.assigned_to"), who) }),
      el("span", {}, `${t("label.updated")} `, ago(c.updated_at)),
    ),
    c.state === "accepted" ? assignControl(c, list, t("action.reassign")) : null,
  );
}

function rosterRow(entry) {
  const heads = [...document.querySelectorAll("#roster-table th")].map((th) => th.textContent);
  const remove = el("button", {
    type: "button",
    class: "btn btn-small btn-danger-quiet",
    text: t("action.remove"),
  });
  remove.addEventListener("click", async () => {
    if (!window.confirm(t("confirm.remove"))) return;
    remove.disabled = true;
    try {
      await del(`/api/roster/${encodeURIComponent(entry.id)}`);
      toast(t("done.roster"));
    } catch (err) {
      if (handleAuthLoss(err)) return;
      toast(errorMessage(err), "error");
    }
    await load();
  });
  return el(
    "tr",
    { class: entry.on_duty_now ? "row-on-duty" : "", dataset: { entryId: entry.id } },
    el("td", { dataset: { label: heads[0] }, text: entry.department.name }),
    el(
      "td",
      { class: "cell-strong", dataset: { label: heads[1] } },
      el(
        "span",
        {},
        entry.specialist.display_name,
        entry.on_duty_now
          ? el("span", { class: "tag tag-ok", text: t("label.on_duty_now") })
          : null,
      ),
    ),
    el("td", { dataset: { label: heads[2] }, text: formatDateTime(entry.starts_at) }),
    el("td", { dataset: { label: heads[3] }, text: formatDateTime(entry.ends_at) }),
    el("td", { class: "cell-actions" }, remove),
  );
}

async function load() {
  specialistsCache = new Map();
  const [queue, all, roster] = await Promise.all([
    get("/api/queue"),
    get("/api/consultations"),
    get("/api/roster"),
  ]);
  const active = all.consultations
    .filter((c) => ACTIVE.has(c.state))
    .sort((a, b) => b.updated_at.localeCompare(a.updated_at));
  const departments = new Set([...queue.consultations, ...active].map((c) => c.department.id));
  const lists = new Map(
    await Promise.all([...departments].map(async (id) => [id, await specialists(id)])),
  );
  replaceChildren(
    waitingList,
    queue.consultations.map((c) => waitingItem(c, lists.get(c.department.id) || [])),
    $("waiting-empty"),
  );
  $("waiting-count").textContent = String(queue.consultations.length);
  replaceChildren(
    activeList,
    active.map((c) => activeItem(c, lists.get(c.department.id) || [])),
    $("active-empty"),
  );
  replaceChildren(rosterBody, roster.entries.map(rosterRow), $("roster-empty"));
  $("roster-table").hidden = roster.entries.length === 0;
}

// -- roster form ------------------------------------------------------------------

function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(
    date.getHours(),
  )}:${pad(date.getMinutes())}`;
}

function resetRosterTimes() {
  const start = new Date();
  start.setMinutes(0, 0, 0);
  const end = new Date(start.getTime() + 8 * 3600 * 1000);
  rosterForm.elements.namedItem("starts_at").value = localInputValue(start);
  rosterForm.elements.namedItem("ends_at").value = localInputValue(end);
}

async function loadDepartments() {
  const { departments } = await get("/api/departments");
  const mine = departments.filter((d) => !me.institution_id || d.institution.id === me.institution_id);
  rosterDepartment.replaceChildren(
    option("", t("label.choose")),
    ...mine.map((d) => option(d.id, d.name)),
  );
}

rosterDepartment.addEventListener("change", async () => {
  const id = rosterDepartment.value;
  rosterSpecialist.replaceChildren(option("", t("label.choose_specialist")));
  rosterSpecialist.disabled = true;
  if (!id) return;
  try {
    const list = await specialists(id);
    if (rosterDepartment.value !== id) return;
    rosterSpecialist.append(...list.map((s) => option(s.id, specialistLabel(s))));
    rosterSpecialist.disabled = false;
  } catch (err) {
    handleAuthLoss(err);
  }
});

onSubmit(rosterForm, $("roster-error"), async (f) => {
  const body = {
    department_id: rosterDepartment.value,
    specialist_id: rosterSpecialist.value,
    starts_at: new Date(f.namedItem("starts_at").value).toISOString(),
    ends_at: new Date(f.namedItem("ends_at").value).toISOString(),
  };
  await post("/api/roster", body);
  toast(t("done.roster"));
  await load();
});

// -- start ----------------------------------------------------------------------

async function start() {
  resetRosterTimes();
  await refresh(() => Promise.all([loadDepartments(), load()]));
  // A consultation past its deadline is pushed to the coordinators by name.
  reloadOnPush(
    () => refresh(load),
    (message) => {
      if (message.type === "consultation.overdue") toast(t("push.overdue"), "error");
      return message.type === "consultation.changed" || message.type === "consultation.overdue";
    },
  );
}

start();
