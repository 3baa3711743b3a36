// Administration: institutions, agreements, departments, accounts and staff-list
// imports, all through /api/admin/... (role-checked and audited on the server).

import { ApiError, csrfToken, get, post, request } from "./api.js";
import {
  $,
  el,
  errorMessage,
  formatDateTime,
  handleAuthLoss,
  onSubmit,
  option,
  refresh,
  replaceChildren,
  showFormError,
  clearFormError,
  t,
  toast,
} from "./ui.js";

const ROLES = ["clinic_doctor", "specialist", "coordinator", "reviewer", "admin"];
const ASKING = new Set(["township_clinic", "county_hospital"]);
const ASKED = new Set(["specialist_hospital"]);

let institutions = [];
let departments = [];
let accountsById = new Map();
let editing = null; // the account being edited, or null for a new one
let editingInstitution = null;
let editingDepartment = null;

const byId = (list) => new Map(list.map((x) => [x.id, x]));
const cell = (label, ...content) => el("td", { "data-label": label }, ...content);
const heads = (table) => [...$(table).querySelectorAll("thead th")].map((th) => th.textContent);

function instName(id) {
  const found = institutions.find((i) => i.id === id);
  return found ? found.name : "";
}

function fillSelect(select, items, { blank = null, keep = true } = {}) {
  const before = select.value;
  select.replaceChildren(
    ...(blank !== null ? [option("", blank)] : []),
    ...items.map(([value, label]) => option(value, label)),
  );
  if (keep && [...select.options].some((o) => o.value === before)) select.value = before;
}

// -- institutions and agreements -------------------------------------------------------

function renderInstitutions() {
  const labels = heads("institutions-table");
  replaceChildren(
    $("institutions-body"),
    institutions.map((i) =>
      el(
        "tr",
        { dataset: { id: i.id } },
        cell(labels[0], el("span", { class: "cell-strong", text: i.name })),
        cell(labels[1], t(`kind.${i.kind}`)),
        cell(labels[2], i.region),
        el(
          "td",
          { class: "cell-actions" },
          editButton(() => editInstitution(i)),
        ),
      ),
    ),
    $("institutions-empty"),
  );
  $("institutions-count").textContent = String(institutions.length);
  const all = institutions.map((i) => [i.id, i.name]);
  fillSelect(
    $("ag-requesting"),
    institutions.filter((i) => ASKING.has(i.kind)).map((i) => [i.id, i.name]),
    { blank: t("label.choose") },
  );
  fillSelect(
    $("ag-consulting"),
    institutions.filter((i) => ASKED.has(i.kind)).map((i) => [i.id, i.name]),
    { blank: t("label.choose") },
  );
  fillSelect($("de-institution"), all, { blank: t("label.choose") });
  fillSelect($("ac-institution"), all, { blank: t("label.choose") });
  fillSelect($("fi-institution"), all, { blank: t("label.all") });
}

function renderAgreements(agreements) {
  const labels = heads("agreements-table");
  replaceChildren(
    $("agreements-body"),
    agreements.map((a) =>
      el(
        "tr",
        { dataset: { id: a.id, active: String(a.active) }, class: a.active ? "" : "row-inactive" },
        cell(labels[0], instName(a.requesting_institution_id)),
        cell(labels[1], instName(a.consulting_institution_id)),
        cell(labels[2], t(`agreement.${a.kind}`)),
        cell(
          labels[3],
          a.active
            ? el("span", { class: "tag tag-ok", text: t("agreement.active") })
            : t("agreement.ended", { when: formatDateTime(a.ended_at) }),
        ),
        el(
          "td",
          { class: "cell-actions" },
          a.active
            ? el("button", {
                type: "button",
                class: "btn btn-small btn-danger-quiet",
                text: t("agreement.end"),
                on: { click: () => endAgreement(a) },
              })
            : null,
        ),
      ),
    ),
    $("agreements-empty"),
  );
  $("agreements-count").textContent = String(agreements.filter((a) => a.active).length);
}

async function endAgreement(a) {
  if (!window.confirm(t("agreement.confirm_end"))) return;
  try {
    await post(`/api/admin/agreements/${encodeURIComponent(a.id)}/end`);
    toast(t("done.agreement"));
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorMessage(err), "error");
  }
  await refresh(loadDirectory);
}

// A small form that adds, or changes the item chosen with its "Edit" button.
/** The "edit" button of a list row. */
function editButton(onClick) {
  return el("button", {
    type: "button",
    class: "btn btn-small",
    dataset: { action: "edit" },
    text: t("account.edit"),
    on: { click: onClick },
  });
}

function editMode(name, item, title) {
  $(`${name}-form-title`).textContent = item ? t("account.editing", { name: title }) : t(`form.add_${name}`);
  $(`${name}-submit`).textContent = item ? t("action.save") : t("form.add");
  $(`${name}-cancel`).hidden = !item;
}

function editInstitution(i) {
  editingInstitution = i;
  const f = $("institution-form").elements;
  f.namedItem("name").value = i.name;
  f.namedItem("kind").value = i.kind;
  f.namedItem("region").value = i.region;
  editMode("institution", i, i.name);
  $("institution-form").scrollIntoView({ block: "start" });
  f.namedItem("name").focus();
}

function stopInstitution() {
  editingInstitution = null;
  $("institution-form").reset();
  clearFormError($("institution-form"), $("institution-error"));
  editMode("institution", null);
}

function editDepartment(d) {
  editingDepartment = d;
  const f = $("department-form").elements;
  f.namedItem("institution_id").value = d.institution_id;
  f.namedItem("institution_id").disabled = true;
  f.namedItem("code").value = d.code;
  f.namedItem("code").disabled = true; // staff lists and other systems know it by the code
  f.namedItem("name").value = d.name;
  editMode("department", d, d.name);
  $("department-form").scrollIntoView({ block: "start" });
  f.namedItem("name").focus();
}

function stopDepartment() {
  editingDepartment = null;
  const f = $("department-form").elements;
  f.namedItem("institution_id").disabled = false;
  f.namedItem("code").disabled = false;
  f.namedItem("code").value = "";
  f.namedItem("name").value = "";
  clearFormError($("department-form"), $("department-error"));
  editMode("department", null);
}

// -- departments ---------------------------------------------------------------------

function renderDepartments() {
  const labels = heads("departments-table");
  replaceChildren(
    $("departments-body"),
    departments.map((d) =>
      el(
        "tr",
        { dataset: { id: d.id } },
        cell(labels[0], instName(d.institution_id)),
        cell(labels[1], el("span", { class: "mono", text: d.code })),
        cell(labels[2], d.name),
        el(
          "td",
          { class: "cell-actions" },
          editButton(() => editDepartment(d)),
        ),
      ),
    ),
    $("departments-empty"),
  );
  $("departments-count").textContent = String(departments.length);
  renderDepartmentChoices();
}

function renderDepartmentChoices(chosen = null) {
  const box = $("ac-departments");
  const institution = $("ac-institution").value;
  const keep = chosen || new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
  const mine = departments.filter((d) => d.institution_id === institution);
  box.classList.add("checks-inline");
  box.replaceChildren(
    ...mine.map((d) =>
      el(
        "label",
        {},
        el("input", {
          type: "checkbox",
          name: "department_ids",
          value: d.id,
          checked: keep.has(d.id),
        }),
        `${d.name} (${d.code})`,
      ),
    ),
  );
  $("ac-departments-none").hidden = mine.length > 0;
}

// -- accounts ------------------------------------------------------------------------

function statusCell(a) {
  if (!a.active) return el("span", { class: "tag tag-missing", text: t("account.inactive") });
  if (a.must_change_password)
    return el("span", { class: "tag tag-info", text: t("account.must_change") });
  return el("span", { class: "tag tag-ok", text: t("account.active") });
}

function renderAccounts(accounts) {
  accountsById = byId(accounts);
  const labels = heads("accounts-table");
  replaceChildren(
    $("accounts-body"),
    accounts.map((a) =>
      el(
        "tr",
        { dataset: { id: a.id, username: a.username }, class: a.active ? "" : "row-inactive" },
        cell(
          labels[0],
          el(
            "span",
            {},
            el("span", { class: "cell-strong", text: a.display_name }),
            a.title ? ` · ${a.title}` : "",
          ),
        ),
        cell(labels[1], el("span", { class: "mono", text: a.username })),
        cell(labels[2], t(`role.${a.role}`)),
        cell(labels[3], instName(a.institution_id)),
        cell(labels[4], a.licence_no || "—"),
        cell(labels[5], a.practice_start ? t("account.years", { years: a.practice_years }) : "—"),
        cell(labels[6], statusCell(a)),
        el(
          "td",
          { class: "cell-actions" },
          editButton(() => startEdit(a)),
          a.active
            ? el("button", {
                type: "button",
                class: "btn btn-small",
                dataset: { action: "reset" },
                text: t("account.reset"),
                on: { click: () => resetPassword(a) },
              })
            : null,
          a.active
            ? el("button", {
                type: "button",
                class: "btn btn-small",
                dataset: { action: "reset-factor" },
                text: t("account.reset_factor"),
                on: { click: () => resetSecondFactor(a) },
              })
            : null,
          el("button", {
            type: "button",
            class: `btn btn-small ${a.active ? "btn-danger-quiet" : "btn-primary-quiet"}`,
            dataset: { action: a.active ? "deactivate" : "reactivate" },
            text: a.active ? t("account.deactivate") : t("account.reactivate"),
            on: { click: () => (a.active ? deactivate(a) : reactivate(a)) },
          }),
        ),
      ),
    ),
    $("accounts-empty"),
  );
  $("accounts-count").textContent = String(accounts.length);
}

function filterQuery() {
  const form = $("filter-form");
  const params = new URLSearchParams();
  for (const name of ["q", "institution_id", "role", "active"]) {
    const value = form.elements.namedItem(name).value.trim();
    if (value) params.set(name, value);
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

async function loadAccounts() {
  const { accounts } = await get(`/api/admin/accounts${filterQuery()}`);
  renderAccounts(accounts);
}

function showPassword(username, password) {
  $("password-dialog-text").textContent = t("password.shown_once", { username });
  $("password-dialog-secret").textContent = password;
  $("password-dialog").showModal();
}

async function resetPassword(a) {
  if (!window.confirm(t("account.confirm_reset", { name: a.display_name }))) return;
  try {
    const r = await post(`/api/admin/accounts/${encodeURIComponent(a.id)}/reset-password`);
    showPassword(a.username, r.temporary_password);
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorMessage(err), "error");
  }
  await refresh(loadAccounts);
}

async function resetSecondFactor(a) {
  if (!window.confirm(t("account.confirm_reset_factor", { name: a.display_name }))) return;
  try {
    await post(`/api/admin/accounts/${encodeURIComponent(a.id)}/totp-reset`);
    toast(t("done.reset_factor"));
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorMessage(err), "error");
  }
  await refresh(loadAccounts);
}

async function deactivate(a) {
  if (!window.confirm(t("account.confirm_deactivate", { name: a.display_name }))) return;
  try {
    await post(`/api/admin/accounts/${encodeURIComponent(a.id)}/deactivate`);
    toast(t("done.deactivated"));
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorMessage(err), "error");
  }
  await refresh(loadAccounts);
}

async function reactivate(a) {
  try {
    await post(`/api/admin/accounts/${encodeURIComponent(a.id)}/reactivate`);
    toast(t("done.reactivated"));
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorMessage(err), "error");
  }
  await refresh(loadAccounts);
}

function startEdit(a) {
  editing = a;
  const f = $("account-form").elements;
  f.namedItem("username").value = a.username;
  f.namedItem("username").disabled = true;
  f.namedItem("display_name").value = a.display_name;
  f.namedItem("role").value = a.role;
  f.namedItem("institution_id").value = a.institution_id;
  f.namedItem("institution_id").disabled = true;
  f.namedItem("title").value = a.title || "";
  f.namedItem("licence_no").value = a.licence_no || "";
  f.namedItem("practice_start").value = a.practice_start || "";
  f.namedItem("phone").value = a.phone || "";
  renderDepartmentChoices(new Set(a.department_ids));
  $("account-form-title").textContent = t("account.editing", { name: a.display_name });
  $("account-submit").textContent = t("action.save");
  $("account-cancel").hidden = false;
  $("account-form").scrollIntoView({ block: "start" });
  f.namedItem("display_name").focus();
}

function stopEdit() {
  editing = null;
  const form = $("account-form");
  form.reset();
  form.elements.namedItem("username").disabled = false;
  form.elements.namedItem("institution_id").disabled = false;
  renderDepartmentChoices(new Set());
  clearFormError(form, $("account-error"));
  $("account-form-title").textContent = t("account.new");
  $("account-submit").textContent = t("action.create_account");
  $("account-cancel").hidden = true;
}

function accountBody(f) {
  const optional = (name) => f.namedItem(name).value.trim() || null;
  return {
    display_name: f.namedItem("display_name").value.trim(),
    role: f.namedItem("role").value,
    title: optional("title"),
    licence_no: optional("licence_no"),
    practice_start: optional("practice_start"),
    phone: optional("phone"),
    department_ids: [...$("ac-departments").querySelectorAll("input:checked")].map((i) => i.value),
  };
}

// -- staff-list import ---------------------------------------------------------------

async function upload(path, file) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/octet-stream", "X-CSRF-Token": csrfToken() },
      body: file,
    });
  } catch (err) {
    throw new ApiError(0, "network", String(err));
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok && !(payload && payload.problems)) {
    const error = (payload && payload.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message, error.fields);
  }
  return payload;
}

const IMPORT_COLUMNS = [
  "username",
  "display_name",
  "role",
  "institution",
  "departments",
  "licence_no",
  "practice_start",
];

// The column's heading as the preview table shows it (the file's own key otherwise).
function columnLabel(column) {
  const th = document.querySelector(`#import-table th[data-column="${column}"]`);
  return th ? th.textContent : column || "—";
}

function problemText(p) {
  const where = p.row > 0 ? t("import.row", { row: p.row }) : t("import.file");
  const key = `problem.${p.code}`;
  const what = t(key) === key ? p.message : t(key);
  return `${where} · ${columnLabel(p.column)}: ${what}`;
}

function renderPreview(result) {
  const bad = new Map();
  for (const p of result.problems) {
    if (!bad.has(p.row)) bad.set(p.row, new Set());
    bad.get(p.row).add(p.column);
  }
  $("import-rows").replaceChildren(
    ...(result.cells || []).map((r) => {
      const cols = bad.get(r._row) || new Set();
      return el(
        "tr",
        { dataset: { row: String(r._row) }, class: cols.size ? "row-bad" : "" },
        el("td", { text: String(r._row) }),
        ...IMPORT_COLUMNS.map((c) =>
          el("td", {
            class: cols.has(c) ? "cell-bad" : "",
            dataset: { column: c },
            title: cols.has(c) ? problemText(result.problems.find((p) => p.row === r._row && p.column === c)) : null,
            text: r[c] || (cols.has(c) ? "—" : ""),
          }),
        ),
      );
    }),
  );
  $("import-problems").replaceChildren(
    ...result.problems.map((p) =>
      el("li", { dataset: { row: String(p.row), column: p.column }, text: problemText(p) }),
    ),
  );
  const summary = $("import-summary");
  const ok = result.problems.length === 0 && result.rows.length > 0;
  summary.textContent = ok
    ? t("import.ok", { count: result.rows.length })
    : t("import.bad", { count: result.problems.length });
  summary.className = ok ? "notice" : "notice notice-warn";
  $("import-result").hidden = false;
  $("import-commit").disabled = !ok;
}

function renderCreated(created) {
  const labels = heads("created-table");
  $("created-body").replaceChildren(
    ...created.map((c) =>
      el(
        "tr",
        { dataset: { username: c.account.username } },
        cell(labels[0], el("span", { class: "mono", text: c.account.username })),
        cell(labels[1], c.account.display_name),
        cell(labels[2], el("span", { class: "mono secret-cell", text: c.temporary_password })),
      ),
    ),
  );
  $("created-result").hidden = false;
}

// -- loading and wiring --------------------------------------------------------------

async function loadDirectory() {
  const [i, a, d] = await Promise.all([
    get("/api/admin/institutions"),
    get("/api/admin/agreements"),
    get("/api/admin/departments"),
  ]);
  institutions = i.institutions;
  departments = d.departments;
  renderInstitutions();
  renderAgreements(a.agreements);
  renderDepartments();
  await loadAccounts();
}

function wire() {
  const roles = ROLES.map((r) => [r, t(`role.${r}`)]);
  fillSelect($("ac-role"), roles, { blank: t("label.choose") });
  fillSelect($("fi-role"), roles, { blank: t("label.all") });
  $("ac-institution").addEventListener("change", () => renderDepartmentChoices(new Set()));
  $("account-cancel").addEventListener("click", stopEdit);
  $("password-dialog").addEventListener("close", () => refresh(loadAccounts));
  let timer = null;
  $("filter-form").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => refresh(loadAccounts), 250);
  });
  $("filter-form").addEventListener("submit", (e) => e.preventDefault());

  $("institution-cancel").addEventListener("click", stopInstitution);
  $("department-cancel").addEventListener("click", stopDepartment);
  onSubmit($("institution-form"), $("institution-error"), async (f) => {
    const data = {
      name: f.namedItem("name").value.trim(),
      kind: f.namedItem("kind").value,
      region: f.namedItem("region").value.trim(),
    };
    if (editingInstitution) {
      const path = `/api/admin/institutions/${encodeURIComponent(editingInstitution.id)}`;
      await request("PUT", path, data);
    } else {
      await post("/api/admin/institutions", data);
    }
    stopInstitution();
    toast(t("done.institution"));
    await loadDirectory();
  });
  onSubmit($("agreement-form"), $("agreement-error"), async (f) => {
    await post("/api/admin/agreements", {
      requesting_institution_id: f.namedItem("requesting_institution_id").value,
      consulting_institution_id: f.namedItem("consulting_institution_id").value,
      kind: f.namedItem("kind").value,
    });
    toast(t("done.agreement"));
    await loadDirectory();
  });
  onSubmit($("department-form"), $("department-error"), async (f) => {
    const name = f.namedItem("name").value.trim();
    if (editingDepartment) {
      const path = `/api/admin/departments/${encodeURIComponent(editingDepartment.id)}`;
      await request("PUT", path, { name });
    } else {
      await post("/api/admin/departments", {
        institution_id: f.namedItem("institution_id").value,
        code: f.namedItem("code").value.trim(),
        name,
      });
    }
    stopDepartment();
    toast(t("done.department"));
    await loadDirectory();
  });
  onSubmit($("account-form"), $("account-error"), async (f) => {
    const data = accountBody(f);
    if (editing) {
      await request("PUT", `/api/admin/accounts/${encodeURIComponent(editing.id)}`, data);
      toast(t("done.account"));
      stopEdit();
    } else {
      const r = await post("/api/admin/accounts", {
        ...data,
        username: f.namedItem("username").value.trim(),
        institution_id: f.namedItem("institution_id").value,
      });
      stopEdit();
      showPassword(r.account.username, r.temporary_password);
    }
    await loadAccounts();
  });

  const importForm = $("import-form");
  const importBox = $("import-error");
  onSubmit(importForm, importBox, async (f) => {
    const file = f.namedItem("file").files[0];
    $("created-result").hidden = true;
    renderPreview(await upload("/api/admin/import/preview", file));
  });
  $("import-commit").addEventListener("click", async () => {
    const file = importForm.elements.namedItem("file").files[0];
    if (!file) return;
    $("import-commit").disabled = true;
    clearFormError(importForm, importBox);
    try {
      const result = await upload("/api/admin/import", file);
      if (result.problems && result.error) {
        renderPreview({ rows: [], cells: [], problems: result.problems });
        showFormError(importForm, importBox, new ApiError(422, result.error.code, ""));
        return;
      }
      $("import-result").hidden = true;
      renderCreated(result.created);
      toast(t("done.imported", { count: result.created.length }));
      importForm.reset();
      await loadAccounts();
    } catch (err) {
      if (!handleAuthLoss(err)) showFormError(importForm, importBox, err);
    }
  });
}

wire();
refresh(loadDirectory);
