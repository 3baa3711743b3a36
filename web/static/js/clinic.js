// Clinic dashboard: patients, consent, new requests, and "my requests" with
// their state kept current by server push.

import { get, post } from "./api.js";
import { openFhirImport } from "./fhir-import.js";
import { reloadOnPush } from "./push.js";
import {
  $,
  ago,
  callLink,
  consultationLink,
  deadlineClock,
  el,
  handleAuthLoss,
  onSubmit,
  option,
  pair,
  reasonDialog,
  refresh,
  replaceChildren,
  sexAge,
  stateBadge,
  t,
  toast,
  urgencyBadge,
  wireDialog,
} from "./ui.js";

const CANCELLABLE = new Set(["requested", "escalated", "accepted"]);
const JOINABLE = new Set(["accepted", "live"]);
const ACTIVE = new Set(["requested", "escalated", "accepted", "live", "ended"]);

const data = { patients: [], consultations: [] };

const patientsBody = $("patients-body");
const requestsList = $("requests-list");
const requestForm = $("request-form");
const patientSelect = $("rq-patient");
const departmentSelect = $("rq-department");
const specialistSelect = $("rq-specialist");
const registerDialog = wireDialog($("register-dialog"));
const registerForm = $("register-form");
const consentDialog = wireDialog($("consent-dialog"));
const consentForm = $("consent-form");
const cancelDialog = reasonDialog("cancel", {
  send: async (c, reason) => {
    await post(`/api/consultations/${encodeURIComponent(c.id)}/cancel`, { reason });
    toast(t("done.cancelled"));
  },
  then: () => loadConsultations().catch(() => {}),
});

let consentPatientId = null;

// -- patients -------------------------------------------------------------------

function consentCell(consent) {
  if (!consent) return el("span", { class: "tag tag-missing", text: t("consent.none") });
  const scopes = [t("consent.consultation")];
  scopes.push(consent.scope_recording ? t("consent.recording") : t("consent.no_recording"));
  return el("span", { class: "tag tag-ok", title: consent.given_by, text: scopes.join(" · ") });
}

function patientRow(patient) {
  const consentButton = el("button", {
    type: "button",
    class: "btn btn-small",
    text: t("action.consent"),
    on: { click: () => openConsent(patient) },
  });
  const requestButton = el("button", {
    type: "button",
    class: "btn btn-small btn-primary-quiet",
    text: t("action.request"),
    disabled: !patient.consent,
    on: { click: () => startRequest(patient) },
  });
  const importButton = el("button", {
    type: "button",
    class: "btn btn-small",
    text: t("fhir.action"),
    dataset: { action: "fhir-import" },
    on: { click: () => openFhirImport(patient) },
  });
  const labels = {
    name: document.querySelector("#patients-table th:nth-child(1)").textContent,
    sex: document.querySelector("#patients-table th:nth-child(2)").textContent,
    age: document.querySelector("#patients-table th:nth-child(3)").textContent,
    nid: document.querySelector("#patients-table th:nth-child(4)").textContent,
    consent: document.querySelector("#patients-table th:nth-child(5)").textContent,
  };
  return el(
    "tr",
    { dataset: { patientId: patient.id } },
    el("td", { class: "cell-strong", dataset: { label: labels.name }, text: patient.name }),
    el("td", { dataset: { label: labels.sex }, text: t(`sex.${patient.sex}`) }),
    el("td", { dataset: { label: labels.age }, text: String(patient.age) }),
    el("td", { class: "mono", dataset: { label: labels.nid }, text: patient.national_id_masked }),
    el("td", { dataset: { label: labels.consent } }, consentCell(patient.consent)),
    el("td", { class: "cell-actions" }, consentButton, importButton, requestButton),
  );
}

function renderPatients() {
  replaceChildren(patientsBody, data.patients.map(patientRow), $("patients-empty"));
  $("patients-table").hidden = data.patients.length === 0;
  const current = patientSelect.value;
  const options = [option("", t("label.choose"))];
  for (const p of data.patients) {
    const label = `${p.name} (${sexAge(p)})${p.consent ? "" : ` — ${t("consent.none")}`}`;
    options.push(option(p.id, label, { disabled: !p.consent }));
  }
  patientSelect.replaceChildren(...options);
  if (data.patients.some((p) => p.id === current && p.consent)) patientSelect.value = current;
}

async function loadPatients() {
  const { patients } = await get("/api/patients");
  data.patients = patients;
  renderPatients();
}

function startRequest(patient) {
  patientSelect.value = patient.id;
  requestForm.scrollIntoView({ behavior: "smooth", block: "start" });
  departmentSelect.focus({ preventScroll: true });
}

$("register-open").addEventListener("click", () => {
  registerForm.reset();
  $("register-error").hidden = true;
  registerDialog.showModal();
});

onSubmit(registerForm, $("register-error"), async (f) => {
  const body = {
    name: f.namedItem("name").value.trim(),
    sex: registerForm.querySelector('input[name="sex"]:checked').value,
    birth_date: f.namedItem("birth_date").value,
    national_id: f.namedItem("national_id").value.trim().toUpperCase(),
  };
  const phone = f.namedItem("phone").value.trim();
  if (phone) body.phone = phone;
  const { patient } = await post("/api/patients", body);
  registerDialog.close();
  toast(t("done.patient"));
  await loadPatients();
  openConsent(patient);
});

function openConsent(patient) {
  consentPatientId = patient.id;
  consentForm.reset();
  $("consent-error").hidden = true;
  $("consent-patient").textContent = `${patient.name} (${sexAge(patient)})`;
  consentForm.elements.namedItem("given_by").value = patient.name;
  consentDialog.showModal();
}

onSubmit(consentForm, $("consent-error"), async (f) => {
  const body = {
    given_by: f.namedItem("given_by").value.trim(),
    relationship: f.namedItem("relationship").value,
    scope_consultation: f.namedItem("scope_consultation").checked,
    scope_recording: f.namedItem("scope_recording").checked,
  };
  await post(`/api/patients/${encodeURIComponent(consentPatientId)}/consents`, body);
  consentDialog.close();
  toast(t("done.consent"));
  await loadPatients();
  patientSelect.value = consentPatientId;
});

// -- departments and specialists --------------------------------------------------

async function loadDepartments() {
  const { departments } = await get("/api/departments");
  const groups = new Map();
  for (const d of departments) {
    const key = d.institution.id;
    if (!groups.has(key)) groups.set(key, el("optgroup", { label: d.institution.name }));
    groups.get(key).append(option(d.id, d.name, { dataset: { code: d.code } }));
  }
  departmentSelect.replaceChildren(option("", t("label.choose")), ...groups.values());
  // Only hospitals the clinic has an agreement with are offered (none: say why).
  $("rq-no-departments").hidden = departments.length > 0;
}

departmentSelect.addEventListener("change", async () => {
  const id = departmentSelect.value;
  specialistSelect.replaceChildren(option("", t("label.any_specialist")));
  specialistSelect.disabled = true;
  if (!id) return;
  try {
    const { specialists } = await get(`/api/departments/${encodeURIComponent(id)}/specialists`);
    if (departmentSelect.value !== id) return; // changed again meanwhile
    for (const s of specialists) {
      const notes = [];
      if (s.title) notes.push(s.title);
      notes.push(s.eligible ? t("label.years", { years: s.practice_years }) : t("label.not_eligible"));
      if (s.on_duty) notes.push(t("label.on_duty"));
      specialistSelect.append(
        option(s.id, `${s.display_name} — ${notes.join(", ")}`, { disabled: !s.eligible }),
      );
    }
    specialistSelect.disabled = false;
  } catch (err) {
    handleAuthLoss(err);
  }
});

onSubmit(requestForm, $("request-error"), async (f) => {
  const body = {
    patient_id: patientSelect.value,
    department_id: departmentSelect.value,
    urgency: requestForm.querySelector('input[name="urgency"]:checked').value,
    reason: f.namedItem("reason").value.trim(),
    question: f.namedItem("question").value.trim(),
  };
  if (specialistSelect.value) body.target_specialist_id = specialistSelect.value;
  await post("/api/consultations", body);
  toast(t("done.request"));
  f.namedItem("reason").value = "";
  f.namedItem("question").value = "";
  await loadConsultations();
});

// -- my requests ----------------------------------------------------------------

function requestItem(c) {
  const head = el(
    "div",
    { class: "item-head" },
    stateBadge(c.state),
    urgencyBadge(c.urgency),
    el("span", { class: "item-title", text: c.department.name }),
    el("span", { class: "item-sub", text: c.consulted_institution.name }),
  );
  const meta = el(
    "div",
    { class: "item-meta" },
    deadlineClock(c),
    el("span", { text: pair(t("label.patient"), sexAge(c.patient)) }),
    el("span", {}, `${t("label.requested")} `, ago(c.created_at)),
    el("span", {
      text: c.assigned_specialist
        ? pair(
            t("label.assigned_to"),
            `${c.assigned_specialist.display_name}${
              c.assigned_specialist.title ? ` (${c.assigned_specialist.title})` : ""
            }`,
          )
        : t("label.unassigned"),
    }),
  );
  const body = el(
    "dl",
    { class: "item-body" },
    el("dt", { text: t("label.reason") }),
    el("dd", { text: c.reason }),
    el("dt", { text: t("label.question") }),
    el("dd", { text: c.question }),
  );
  if (c.state === "declined" && c.decline_reason) {
    body.append(
      el("dt", { text: t("label.decline_reason") }),
      el("dd", { class: "text-danger", text: c.decline_reason }),
    );
  }
  const actions = el("div", { class: "item-actions" });
  if (JOINABLE.has(c.state)) actions.append(callLink(c));
  // A signed opinion or referral is what the clinic came for: make it the main action.
  actions.append(consultationLink(c, { primary: c.state === "signed" || c.state === "referred" }));
  if (CANCELLABLE.has(c.state)) {
    actions.append(
      el("button", {
        type: "button",
        class: "btn btn-small btn-danger-quiet",
        text: t("action.cancel"),
        on: { click: () => cancelDialog.open(c) },
      }),
    );
  }
  return el(
    "li",
    {
      class: `item${c.escalated ? " item-escalated" : ""}${c.overdue ? " item-overdue" : ""}${ACTIVE.has(c.state) ? "" : " item-closed"}`,
      dataset: { consultationId: c.id, state: c.state },
    },
    head,
    meta,
    body,
    actions,
  );
}

function renderConsultations() {
  const sorted = [...data.consultations].sort((a, b) => {
    const active = Number(ACTIVE.has(b.state)) - Number(ACTIVE.has(a.state));
    return active || b.created_at.localeCompare(a.created_at);
  });
  replaceChildren(requestsList, sorted.map(requestItem), $("requests-empty"));
}

async function loadConsultations() {
  const { consultations } = await get("/api/consultations");
  data.consultations = consultations;
  renderConsultations();
}

// -- start ----------------------------------------------------------------------

async function start() {
  await refresh(() => Promise.all([loadPatients(), loadDepartments(), loadConsultations()]));
  reloadOnPush(() => refresh(loadConsultations));
}

start();
