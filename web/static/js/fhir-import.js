// The clinic's FHIR import: a hospital's or EMR's FHIR R4 file into one patient's
// structured summary, sent with progress, answered with what was and was not
// imported (issue 14). Only the patient's clinic sees the button.

import { ApiError, csrfToken, post } from "./api.js";
import { $, el, t, toast, wireDialog } from "./ui.js";

const TABLES = ["conditions", "medications", "allergies", "observations", "immunizations", "procedures"];
// Most problems listed one by one; the rest are counted.
const SHOWN_PROBLEMS = 20;

const dialog = $("fhir-dialog");
const form = $("fhir-form");
const fileInput = $("fhir-file");
const progress = $("fhir-progress");
const bar = $("fhir-progress-bar");
const progressText = $("fhir-progress-text");
const errorBox = $("fhir-error");
const report = $("fhir-report");
const submit = $("fhir-submit");
let patientId = null;

if (dialog) wireDialog(dialog);

export function openFhirImport(patient) {
  patientId = patient.id;
  form.reset();
  $("fhir-patient").textContent = patient.name;
  errorBox.hidden = true;
  report.hidden = true;
  report.replaceChildren();
  progress.hidden = true;
  submit.disabled = false;
  dialog.showModal();
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function countList(counts, label) {
  const items = Object.entries(counts || {}).filter(([, n]) => n > 0);
  if (!items.length) return null;
  return el(
    "div",
    { class: "fhir-report-part" },
    el("h4", { text: label }),
    el(
      "ul",
      { class: "fhir-counts" },
      items.map(([key, n]) =>
        el(
          "li",
          { dataset: { kind: key } },
          el("span", { text: TABLES.includes(key) ? t(`fhir.table.${key}`) : key }),
          el("strong", { text: String(n) }),
        ),
      ),
    ),
  );
}

function renderReport(imported) {
  const parts = [
    el("h3", { text: t("fhir.report.title") }),
    el("p", { class: "muted small", text: t("fhir.report.type", { type: imported.bundle_type }) }),
  ];
  const created = countList(imported.created, t("fhir.report.created"));
  const updated = countList(imported.updated, t("fhir.report.updated"));
  if (!created && !updated) parts.push(el("p", { text: t("fhir.report.nothing") }));
  parts.push(created, updated);
  const placeholders = Object.fromEntries(
    Object.entries(imported.no_information || {}).map(([key, list]) => [key, list.length]),
  );
  parts.push(countList(placeholders, t("fhir.report.no_information")));
  parts.push(countList(imported.not_used, t("fhir.report.not_used")));
  const leftOut = imported.left_out || [];
  if (leftOut.length) {
    const shown = leftOut.slice(0, SHOWN_PROBLEMS).map((p) =>
      el("li", {}, el("code", { text: p.path }), el("span", { text: ` ${p.message}` })),
    );
    if (leftOut.length > SHOWN_PROBLEMS) {
      shown.push(el("li", { class: "muted", text: t("fhir.report.more", { count: leftOut.length - SHOWN_PROBLEMS }) }));
    }
    parts.push(
      el(
        "div",
        { class: "fhir-report-part fhir-left-out" },
        el("h4", { text: `${t("fhir.report.left_out")} (${leftOut.length})` }),
        el("ul", {}, shown),
      ),
    );
  }
  report.replaceChildren(...parts.filter(Boolean));
  report.hidden = false;
}

function send(file) {
  const setProgress = (fraction) => {
    const percent = `${Math.round(fraction * 100)}%`;
    bar.value = Math.round(fraction * 100);
    progressText.textContent = t("fhir.uploading", { name: file.name, percent });
  };
  setProgress(0);
  progress.hidden = false;
  submit.disabled = true;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/patients/${encodeURIComponent(patientId)}/fhir`);
  xhr.setRequestHeader("Accept", "application/json");
  // FHIR's XML form by its name or type; JSON otherwise.
  const isXml = /\.xml$/i.test(file.name) || /xml/.test(file.type || "");
  xhr.setRequestHeader("Content-Type", isXml ? "application/fhir+xml" : "application/fhir+json");
  xhr.setRequestHeader("X-CSRF-Token", csrfToken());
  xhr.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    setProgress(event.loaded / event.total);
    // Sent: the server reads it now (large files take a few seconds).
    if (event.loaded === event.total) progressText.textContent = t("fhir.reading");
  });
  const done = () => {
    progress.hidden = true;
    submit.disabled = false;
  };
  xhr.addEventListener("load", () => {
    done();
    let payload = null;
    try {
      payload = JSON.parse(xhr.responseText);
    } catch {
      payload = null;
    }
    if (xhr.status === 200 && payload && payload.imported) {
      toast(t("fhir.done"));
      renderReport(payload.imported);
      return;
    }
    const error = (payload && payload.error) || {};
    const failure = new ApiError(xhr.status, error.code || `http_${xhr.status}`, error.message || "", error.fields);
    console.warn("fhir import", failure.code);
    if (xhr.status === 413) showError(t("fhir.too_large"));
    else showError(error.message ? `${t("fhir.failed")} ${error.message}` : t("fhir.failed"));
  });
  xhr.addEventListener("error", () => {
    done();
    showError(t("fhir.failed"));
  });
  xhr.send(file);
}

async function fetchFromServer() {
  errorBox.hidden = true;
  report.hidden = true;
  const identifier = $("fhir-identifier").value.trim();
  progress.hidden = false;
  bar.removeAttribute("value"); // indeterminate: the server's pages are not counted ahead
  progressText.textContent = t("fhir.fetching");
  submit.disabled = true;
  $("fhir-fetch-submit").disabled = true;
  try {
    const { imported } = await post(
      `/api/patients/${encodeURIComponent(patientId)}/fhir/fetch`,
      identifier ? { identifier } : {},
    );
    toast(t("fhir.done"));
    renderReport(imported);
  } catch (err) {
    console.warn("fhir fetch", err && err.code);
    showError(err && err.message ? `${t("fhir.fetch_failed")} ${err.message}` : t("fhir.fetch_failed"));
  } finally {
    progress.hidden = true;
    bar.value = 0;
    submit.disabled = false;
    $("fhir-fetch-submit").disabled = false;
  }
}

if ($("fhir-fetch-submit")) $("fhir-fetch-submit").addEventListener("click", fetchFromServer);

if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    report.hidden = true;
    const file = fileInput.files && fileInput.files[0];
    if (!file) {
      showError(t("fhir.choose"));
      return;
    }
    send(file);
  });
}
