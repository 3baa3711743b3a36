// The medical-affairs statistics: a range and filters, the figures from the
// audited API drawn as charts (the vendored Chart.js UMD build, which sets
// globalThis.Chart) and shown again as tables, and the CSV/XLSX downloads of
// the same query. signaling/workflow/stats.py defines every figure.

import "/static/vendor/chartjs-4.6.1/chart.umd.min.js";
import { get } from "./api.js";
import { $, LOCALE, PAGE, el, errorMessage, t } from "./ui.js";

const { Chart } = globalThis;
const form = $("stats-filters");
const charts = new Map();
const URGENCIES = ["emergency", "urgent", "routine"];
// Emergency red, urgent amber, routine teal (the app's palette).
const URGENCY_COLOURS = { emergency: "#b42318", urgent: "#dc8a00", routine: "#0f6e74" };
const number = new Intl.NumberFormat(LOCALE);
const percent = new Intl.NumberFormat(LOCALE, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
const hours = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 2 });

Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
Chart.defaults.color = "#5b6775";
Chart.defaults.animation = false;
// A phone has room for less: smaller axis labels.
if (window.innerWidth < 600) Chart.defaults.font.size = 10;
Chart.defaults.maintainAspectRatio = false;

// Chart.js cuts long axis labels: give it lines of at most `max` characters
// (at spaces for English, anywhere for Chinese).
function wrap(text, max = 16) {
  const words = /\s/.test(text) ? text.split(/\s+/) : [...text];
  const glue = /\s/.test(text) ? " " : "";
  const lines = [];
  let line = "";
  for (const word of words) {
    const next = line ? line + glue + word : word;
    if (line && next.length > max) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}

const fmtRate = (rate) => (rate === null || rate === undefined ? "–" : percent.format(rate));
const fmtNumber = (h) => (h === null || h === undefined ? "–" : hours.format(h));
const fmtHours = (h) => (h === null || h === undefined ? "–" : t("stats.hours", { h: hours.format(h) }));

function isoDay(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

// The form as the API's query string (empty fields left out).
function query() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) params.set(key, String(value));
  return params.toString();
}

function table(id, header, rows, { numeric = [] } = {}) {
  const head = el("tr", {}, ...header.map((h, i) => el("th", { scope: "col", class: numeric.includes(i) ? "num" : "", text: h })));
  const body = rows.length
    ? rows.map((row) => el("tr", {}, ...row.map((cell, i) => el("td", { class: numeric.includes(i) ? "num" : "", text: String(cell) }))))
    : [el("tr", { class: "empty-row" }, el("td", { colspan: String(header.length), text: t("stats.none") }))];
  $(id).replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
}

function chart(id, config) {
  charts.get(id)?.destroy();
  charts.set(id, new Chart($(id), config));
}

const horizontal = (extra = {}) => ({
  indexAxis: "y",
  plugins: { legend: { display: false } },
  scales: { x: { beginAtZero: true, ticks: { precision: 0 } }, y: { ticks: { autoSkip: false } } },
  ...extra,
});

function monthLabel(month) {
  const [y, m] = month.split("-").map(Number);
  return new Intl.DateTimeFormat(LOCALE, { year: "2-digit", month: "short" }).format(new Date(y, m - 1, 1));
}

function draw(s) {
  $("tile-total").textContent = number.format(s.total);
  $("tile-accepted").textContent = fmtRate(s.outcomes.accepted.rate);
  $("tile-accept-time").textContent = fmtHours(s.times.to_accept.median_hours);
  $("tile-recording").textContent = fmtRate(s.recording.rate);

  chart("chart-by-month", {
    type: "bar",
    data: {
      labels: s.by_month.map((m) => monthLabel(m.month)),
      datasets: URGENCIES.map((u) => ({
        label: t(`urgency.${u}`),
        data: s.by_month.map((m) => m.by_urgency[u]),
        backgroundColor: URGENCY_COLOURS[u],
      })),
    },
    options: {
      plugins: { legend: { position: "bottom" } },
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
  table(
    "table-by-month",
    [t("stats.month"), ...URGENCIES.map((u) => t(`urgency.${u}`)), t("stats.total_col")],
    s.by_month.map((m) => [m.month, ...URGENCIES.map((u) => number.format(m.by_urgency[u])), number.format(m.total)]),
    { numeric: [1, 2, 3, 4] },
  );

  chart("chart-by-department", {
    type: "bar",
    data: {
      labels: s.by_department.map((d) => wrap(d.name)),
      datasets: [{ label: t("stats.count"), data: s.by_department.map((d) => d.count), backgroundColor: "#2456a6" }],
    },
    options: horizontal(),
  });
  table(
    "table-by-department",
    [t("stats.department"), t("stats.hospital"), t("stats.count")],
    s.by_department.map((d) => [d.name, d.institution, number.format(d.count)]),
    { numeric: [2] },
  );

  chart("chart-by-institution", {
    type: "bar",
    data: {
      labels: s.by_institution.map((i) => wrap(i.name)),
      datasets: [{ label: t("stats.count"), data: s.by_institution.map((i) => i.count), backgroundColor: "#0f6e74" }],
    },
    options: horizontal(),
  });
  table(
    "table-by-institution",
    [t("stats.institution"), t("stats.count")],
    s.by_institution.map((i) => [i.name, number.format(i.count)]),
    { numeric: [1] },
  );

  const outcomes = ["accepted", "declined", "cancelled", "waiting"];
  chart("chart-outcomes", {
    type: "bar",
    data: {
      labels: outcomes.map((k) => t(`stats.outcome.${k}`)),
      datasets: [
        {
          label: t("stats.rate"),
          data: outcomes.map((k) => (s.outcomes[k].rate ?? 0) * 100),
          backgroundColor: ["#1e7a3c", "#b42318", "#9a5b00", "#667085"],
        },
      ],
    },
    options: horizontal({
      scales: { x: { beginAtZero: true, max: 100, ticks: { callback: (v) => `${v}%` } }, y: { ticks: { autoSkip: false } } },
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `${c.parsed.x.toFixed(1)}%` } } },
    }),
  });
  table(
    "table-outcomes",
    [t("stats.outcome"), t("stats.count"), t("stats.of"), t("stats.rate")],
    outcomes.map((k) => [t(`stats.outcome.${k}`), number.format(s.outcomes[k].count), number.format(s.outcomes[k].of), fmtRate(s.outcomes[k].rate)]),
    { numeric: [1, 2, 3] },
  );
  table("table-decline-reasons", [t("stats.reason"), t("stats.count")], s.decline_reasons.map((r) => [r.reason || t("stats.no_reason"), number.format(r.count)]), { numeric: [1] });
  table("table-cancel-reasons", [t("stats.reason"), t("stats.count")], s.cancel_reasons.map((r) => [r.reason || t("stats.no_reason"), number.format(r.count)]), { numeric: [1] });

  const times = ["to_accept", "to_start", "to_sign"];
  chart("chart-times", {
    type: "bar",
    data: {
      labels: times.map((k) => wrap(t(`stats.time.${k}`), 18)),
      datasets: [
        { label: t("stats.median"), data: times.map((k) => s.times[k].median_hours), backgroundColor: "#2456a6" },
        { label: t("stats.p90"), data: times.map((k) => s.times[k].p90_hours), backgroundColor: "#9fb8e3" },
      ],
    },
    options: {
      indexAxis: "y",
      plugins: { legend: { position: "bottom" } },
      // Every label shown: Chart.js would skip one where they crowd.
      scales: { x: { beginAtZero: true }, y: { ticks: { autoSkip: false } } },
    },
  });
  table(
    "table-times",
    [t("stats.time"), t("stats.count"), t("stats.median_short"), t("stats.p90_short")],
    // The header says "hours": the cells hold the numbers alone.
    times.map((k) => [t(`stats.time.${k}`), number.format(s.times[k].count), fmtNumber(s.times[k].median_hours), fmtNumber(s.times[k].p90_hours)]),
    { numeric: [1, 2, 3] },
  );

  const deadlines = ["scheduled_accept", "routine_complete", "emergency"];
  chart("chart-compliance", {
    type: "bar",
    data: {
      labels: deadlines.map((k) => wrap(t(`stats.compliance.${k}`), 24)),
      datasets: [{ label: t("stats.rate"), data: deadlines.map((k) => (s.compliance[k].rate ?? 0) * 100), backgroundColor: "#1e7a3c" }],
    },
    options: horizontal({
      scales: { x: { beginAtZero: true, max: 100, ticks: { callback: (v) => `${v}%` } }, y: { ticks: { autoSkip: false } } },
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `${c.parsed.x.toFixed(1)}%` } } },
    }),
  });
  table(
    "table-compliance",
    [t("stats.deadline"), t("stats.in_time"), t("stats.due"), t("stats.rate")],
    deadlines.map((k) => [t(`stats.compliance.${k}`), number.format(s.compliance[k].count), number.format(s.compliance[k].of), fmtRate(s.compliance[k].rate)]),
    { numeric: [1, 2, 3] },
  );

  const rec = s.recording;
  chart("chart-recording", {
    type: "doughnut",
    data: {
      labels: [t("stats.recorded"), t("stats.not_recorded")],
      datasets: [{ data: [rec.count, rec.of - rec.count], backgroundColor: ["#0f6e74", "#dde3ea"] }],
    },
    options: {
      plugins: {
        legend: { position: "bottom", labels: { generateLabels: () => [
          { text: `${t("stats.recorded")}: ${number.format(rec.count)}`, fillStyle: "#0f6e74", strokeStyle: "#0f6e74" },
          { text: `${t("stats.not_recorded")}: ${number.format(rec.of - rec.count)}`, fillStyle: "#dde3ea", strokeStyle: "#c5cfd9" },
        ] } },
      },
    },
  });
  table(
    "table-recording",
    [t("stats.with_call"), t("stats.recorded"), t("stats.rate")],
    [[number.format(rec.of), number.format(rec.count), fmtRate(rec.rate)]],
    { numeric: [0, 1, 2] },
  );

  table(
    "table-by-urgency",
    [t("stats.urgency"), t("stats.count")],
    URGENCIES.map((u) => [t(`urgency.${u}`), number.format(s.by_urgency[u])]),
    { numeric: [1] },
  );
}

async function load() {
  const box = $("stats-error");
  box.hidden = true;
  const q = query();
  $("download-csv").href = `/api/stats.csv?${q}`;
  $("download-xlsx").href = `/api/stats.xlsx?${q}`;
  $("stats-tiles").setAttribute("aria-busy", "true");
  try {
    const { stats } = await get(`/api/stats?${q}`);
    draw(stats);
    document.body.dataset.statsLoaded = "true";
  } catch (err) {
    box.textContent = err.code === "invalid" && err.fields.includes("to") ? t("stats.bad_range") : errorMessage(err);
    box.hidden = false;
  } finally {
    $("stats-tiles").setAttribute("aria-busy", "false");
  }
}

async function loadChoices() {
  const scope = PAGE.scope_institution_id;
  const [{ departments }, { institutions }] = await Promise.all([get("/api/departments"), get("/api/institutions")]);
  const deps = $("f-department");
  for (const d of departments.filter((x) => !scope || x.institution.id === scope)) {
    deps.append(el("option", { value: d.id, text: scope ? d.name : `${d.name} · ${d.institution.name}` }));
  }
  const insts = $("f-institution");
  for (const i of institutions.filter((x) => x.kind !== "specialist_hospital")) insts.append(el("option", { value: i.id, text: i.name }));
}

// The default range: the first day of the month eleven months back to today.
const today = new Date();
$("f-to").value = isoDay(today);
$("f-from").value = isoDay(new Date(today.getFullYear(), today.getMonth() - 11, 1));
$("stats-scope").textContent = PAGE.scope_institution_id ? t("stats.scope.own", { name: PAGE.scope_name }) : t("stats.scope.all");

form.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
for (const id of ["f-department", "f-institution", "f-urgency"]) $(id).addEventListener("change", load);

loadChoices().catch(() => {});
load();
