// Recorded consultations the user may replay: filters (dates, department,
// clinic, duration) and paging; each row opens the replay page.

import { get } from "./api.js";
import { $, LOCALE, el, t } from "./ui.js";

const PER_PAGE = 20;
const form = $("filters");
const body = $("results-body");
const empty = $("results-empty");
let page = 1;
let pages = 1;

const dateTime = new Intl.DateTimeFormat(LOCALE, { dateStyle: "medium", timeStyle: "short" });

function duration(ms) {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const mmss = `${String(m).padStart(h ? 2 : 1, "0")}:${String(s % 60).padStart(2, "0")}`;
  return h ? `${h}:${mmss}` : mmss;
}

function dayStart(value) {
  return value ? new Date(`${value}T00:00:00`).toISOString() : "";
}

function dayAfter(value) {
  if (!value) return "";
  const d = new Date(`${value}T00:00:00`);
  d.setDate(d.getDate() + 1);
  return d.toISOString();
}

function query() {
  const data = new FormData(form);
  const params = new URLSearchParams({ page: String(page), per_page: String(PER_PAGE) });
  if (data.get("from")) params.set("from", dayStart(data.get("from")));
  if (data.get("to")) params.set("to", dayAfter(data.get("to")));
  for (const key of ["department_id", "clinic_id", "specialist_id"]) if (data.get(key)) params.set(key, data.get(key));
  const minutes = Number(data.get("min_minutes") || 0);
  if (minutes > 0) params.set("min_duration_ms", String(minutes * 60000));
  return params.toString();
}

async function load() {
  const data = await get(`/api/recordings?${query()}`);
  pages = Math.max(1, Math.ceil(data.total / PER_PAGE));
  body.replaceChildren(
    ...data.items.map((item) =>
      el(
        "tr",
        { dataset: { consultationId: item.consultation_id } },
        el("td", { text: dateTime.format(new Date(item.started_at)) }),
        el("td", { text: item.department.name }),
        el("td", { text: item.clinic.name }),
        el("td", { text: item.specialist ? item.specialist.display_name : "" }),
        el("td", { text: duration(item.duration_ms) }),
        el(
          "td",
          {},
          el("a", { class: "btn btn-quiet", href: `/consultations/${item.consultation_id}/replay`, text: t("replay.list.open") }),
        ),
      ),
    ),
  );
  empty.hidden = data.items.length > 0;
  empty.textContent = t("replay.list.empty");
  $("page-info").textContent = t("replay.list.page", { page, pages, total: data.total });
  $("prev").disabled = page <= 1;
  $("next").disabled = page >= pages;
}

async function loadChoices() {
  const { departments } = await get("/api/departments");
  const select = $("f-department");
  for (const d of departments) select.append(el("option", { value: d.id, text: `${d.name} · ${d.institution.name}` }));
  const { institutions } = await get("/api/institutions");
  const clinics = $("f-clinic");
  for (const i of institutions.filter((x) => x.kind !== "specialist_hospital")) {
    clinics.append(el("option", { value: i.id, text: i.name }));
  }
}

// The specialists of the chosen department.
$("f-department").addEventListener("change", async () => {
  const select = $("f-specialist");
  select.replaceChildren(select.options[0]);
  const id = $("f-department").value;
  if (!id) return;
  const { specialists } = await get(`/api/departments/${id}/specialists`);
  for (const s of specialists) select.append(el("option", { value: s.id, text: s.display_name }));
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  page = 1;
  load();
});
$("prev").addEventListener("click", () => {
  page = Math.max(1, page - 1);
  load();
});
$("next").addEventListener("click", () => {
  page = Math.min(pages, page + 1);
  load();
});

loadChoices();
load();
