// One consultation: the request, the shared records (records.js), the timeline
// and the opinion. The assigned specialist writes and signs the opinion (or a
// referral) once the call has ended, and may add signed addenda; everyone who
// may see the consultation reads the signed text with its signer, time and
// SHA-256. The page follows server push (consultation.changed, also sent for an
// addendum), so the clinic sees the signature without reloading.

import { get, post } from "./api.js";
import { figures, reasonList, verdictBadge } from "./precall-view.js";
import { reloadOnPush } from "./push.js";
import { RecordsPanel } from "./records.js";
import {
  $,
  LOCALE,
  PAGE,
  STRINGS,
  ask,
  busy,
  callLink,
  checkRequired,
  deadlineClock,
  el,
  handleAuthLoss,
  sexAge,
  showFormError,
  stateBadge,
  t,
  toast,
  urgencyBadge,
} from "./ui.js";

const JOINABLE = new Set(["accepted", "live"]);
const CLOSED = new Set(["declined", "cancelled"]);
const cid = PAGE.consultation_id;
const me = PAGE.account || {};

const form = $("opinion-form");
const signDialog = $("sign-dialog");
const signedBox = $("signed");

const stamp = new Intl.DateTimeFormat(LOCALE, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const clock = new Intl.DateTimeFormat(LOCALE, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

function when(iso, format = stamp) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : format.format(date);
}

let data = null;
let titles = new Map(); // document id -> title, from the records panel
let kinds = new Map(); // document id -> kind (a DICOM image's "page" is its frame)

// -- the request ----------------------------------------------------------------

function personName(person) {
  if (!person) return "";
  return person.title ? `${person.display_name} · ${person.title}` : person.display_name;
}

function renderRequest(c) {
  $("cons-state").replaceChildren(...[stateBadge(c.state), deadlineClock(c)].filter(Boolean));
  $("cons-urgency").replaceChildren(urgencyBadge(c.urgency));
  $("cons-subtitle").textContent = [c.department.name, c.consulted_institution.name].join(" · ");
  $("f-patient").textContent = sexAge(c.patient);
  $("f-department").textContent = `${c.department.name} · ${c.consulted_institution.name}`;
  $("f-clinic").textContent = c.requesting_institution.name;
  $("f-requested-by").textContent = c.requested_by ? personName(c.requested_by) : "";
  $("f-created").replaceChildren(el("time", { datetime: c.created_at, text: when(c.created_at) }));
  $("f-specialist").textContent = c.assigned_specialist
    ? personName(c.assigned_specialist)
    : t("label.unassigned");
  $("f-reason").textContent = c.reason;
  $("f-question").textContent = c.question;
  const actions = $("cons-actions");
  actions.replaceChildren();
  if (PAGE.participant && JOINABLE.has(c.state)) actions.append(callLink(c));
}

// -- the timeline ---------------------------------------------------------------

// Each event kind has one label (web/i18n.py EVENT_LABELS, "event.<kind>"); a
// kind this page does not know yet is shown as its token rather than hidden.
function eventText(e) {
  const name = e.actor ? e.actor.display_name : t("cons.system");
  const d = e.data || {};
  const key = `event.${e.kind}`;
  if (!Object.prototype.hasOwnProperty.call(STRINGS, key)) {
    return t("cons.event.other", { kind: e.kind });
  }
  const title = d.title || titles.get(d.document_id) || "";
  let text =
    e.kind === "document_shared" && title
      ? t("cons.event.document_shared_title", { name, title })
      : t(key, { name, text: d.text || "", title });
  if ((e.kind === "document_shown" || e.kind === "document_opened") && d.page) {
    text +=
      kinds.get(d.document_id) === "dicom"
        ? ` · ${t("cons.frame_suffix", { frame: d.page })}`
        : ` · ${t("cons.page_suffix", { page: d.page })}`;
  }
  return text;
}

function renderTimeline(events) {
  $("timeline").replaceChildren(
    ...events.map((e) =>
      el(
        "li",
        { class: "timeline-item", dataset: { kind: e.kind, eventId: String(e.id) } },
        el("time", { datetime: e.at, text: when(e.at, clock) }),
        el("span", { class: "timeline-text", text: eventText(e) }),
      ),
    ),
  );
}

// -- pre-call checks ------------------------------------------------------------

// The latest check of each participant who ran one: who, when, verdict, figures.
function renderPrecall(checks) {
  $("precall-checks").replaceChildren(
    ...checks.map((c) =>
      el(
        "li",
        { class: "pc-check", dataset: { checkId: c.id, verdict: c.verdict } },
        el(
          "div",
          { class: "pc-check-head" },
          el("span", {
            class: "pc-check-who",
            text: t("precall.checked_by", {
              name: c.participant ? c.participant.display_name : "",
              time: when(c.checked_at),
            }),
          }),
          verdictBadge(c.verdict),
        ),
        figures(c.report),
        el("ul", { class: "pc-reasons" }, ...reasonList(c.report.reasons)),
      ),
    ),
  );
  const none = $("precall-none");
  none.textContent = t("precall.none");
  none.hidden = checks.length > 0;
}

async function loadPrecall() {
  try {
    const { checks } = await get(`/api/consultations/${encodeURIComponent(cid)}/precall`);
    renderPrecall(checks);
    document.body.dataset.precallChecks = String(checks.length);
  } catch (err) {
    handleAuthLoss(err);
  }
}

// -- the opinion ----------------------------------------------------------------

function shortHash(sha) {
  return sha ? `${sha.slice(0, 12)}…` : "";
}

function signature(o) {
  return el(
    "p",
    { class: "signed-meta" },
    el("span", {
      text: t("cons.signed_by", { name: personName(o.author), time: when(o.signed_at) }),
    }),
    el(
      "span",
      { class: "signed-hash" },
      el("code", {
        class: "mono",
        title: o.sha256,
        dataset: { sha256: o.sha256 },
        text: t("cons.sha", { hash: shortHash(o.sha256) }),
      }),
    ),
  );
}

function bodyFields(o) {
  const b = o.body || {};
  const rows =
    o.kind === "referral"
      ? [
          ["cons.referral.reason", b.reason],
          ["cons.referral.department", b.department],
        ]
      : [
          ["cons.opinion.findings", b.findings],
          ["cons.opinion.impression", b.impression],
          ["cons.opinion.recommendations", b.recommendations],
          ["cons.opinion.notes", b.notes],
        ];
  return el(
    "dl",
    { class: "signed-body" },
    rows
      .filter(([, value]) => value)
      .flatMap(([key, value]) => [
        el("dt", { text: t(key) }),
        el("dd", { dataset: { field: key.split(".").pop() }, text: value }),
      ]),
  );
}

function addendumForm(parent) {
  const node = $("addendum-template").content.firstElementChild.cloneNode(true);
  const textarea = node.querySelector("textarea");
  const box = node.querySelector(".form-error");
  textarea.id = `addendum-${parent.id}`;
  node.querySelector("label").htmlFor = textarea.id;
  box.id = `addendum-error-${parent.id}`;
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!checkRequired(node, box)) return;
    if ((await confirmSign("addendum")) !== "sign") return;
    await busy(node, async () => {
      try {
        await post(
          `/api/consultations/${encodeURIComponent(cid)}/opinion/${encodeURIComponent(parent.id)}/addendum`,
          { text: textarea.value.trim() },
        );
        textarea.value = "";
        toast(t("cons.done.addendum"));
        await load();
      } catch (err) {
        if (!handleAuthLoss(err)) showFormError(node, box, err);
      }
    });
  });
  return node;
}

function renderSigned(c) {
  const parents = c.opinions.filter((o) => o.kind !== "addendum");
  const articles = parents.map((o) => {
    const addenda = c.opinions.filter((a) => a.kind === "addendum" && a.parent_id === o.id);
    const article = el(
      "article",
      { class: `signed signed-${o.kind}`, dataset: { opinionId: o.id, kind: o.kind } },
      el(
        "header",
        { class: "signed-head" },
        el("h3", { text: t(`cons.kind.${o.kind}`) }),
        stateBadge(o.kind === "referral" ? "referred" : "signed"),
      ),
      bodyFields(o),
      signature(o),
      addenda.map((a) =>
        el(
          "section",
          { class: "addendum", dataset: { opinionId: a.id, kind: "addendum" } },
          el("h4", { text: t("cons.kind.addendum") }),
          el("p", { class: "addendum-text", text: (a.body && a.body.text) || "" }),
          signature(a),
        ),
      ),
    );
    if (o.author && o.author.id === me.id) article.append(addendumForm(o));
    return article;
  });
  // Keep what an author is typing in an addendum across a pushed refresh.
  const typing = new Map(
    [...signedBox.querySelectorAll(".addendum-form textarea")].map((ta) => [ta.id, ta.value]),
  );
  signedBox.replaceChildren(...articles);
  for (const [id, value] of typing) {
    const ta = document.getElementById(id);
    if (ta) ta.value = value;
  }
}

function renderOpinion(c) {
  const card = $("opinion-card");
  const wait = $("opinion-wait");
  const signed = c.opinions.some((o) => o.kind !== "addendum");
  const mine = c.assigned_specialist && c.assigned_specialist.id === me.id;
  let mode;
  if (signed) mode = "signed";
  else if (c.state === "ended" && mine) mode = "write";
  else mode = "wait";
  card.dataset.mode = mode;
  // The report (会诊报告单) exists once an opinion or referral is signed; whoever
  // sees this page may download it (the server audits each download).
  $("report-link").hidden = mode !== "signed";
  form.hidden = mode !== "write";
  wait.hidden = mode !== "wait";
  if (mode === "wait") {
    let key = "cons.wait.before";
    if (c.state === "ended") key = "cons.wait.ended";
    else if (CLOSED.has(c.state)) key = "cons.wait.closed";
    wait.textContent = t(key);
  }
  if (mode === "signed") renderSigned(c);
  else signedBox.replaceChildren();
}

function formKind() {
  return form.querySelector('input[name="kind"]:checked').value;
}

function syncKind() {
  const kind = formKind();
  for (const part of form.querySelectorAll("[data-for]")) {
    const on = part.dataset.for === kind;
    part.hidden = !on;
    for (const input of part.querySelectorAll("textarea, input")) input.disabled = !on;
  }
}
for (const radio of form.querySelectorAll('input[name="kind"]')) {
  radio.addEventListener("change", syncKind);
}

function confirmSign(kind) {
  for (const p of signDialog.querySelectorAll("[data-for]")) p.hidden = p.dataset.for !== kind;
  return ask(signDialog);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const box = $("opinion-error");
  if (!checkRequired(form, box)) return;
  const kind = formKind();
  const value = (name) => form.elements.namedItem(name).value.trim();
  let path;
  let body;
  if (kind === "referral") {
    path = "referral";
    body = { reason: value("reason") };
    if (value("department")) body.department = value("department");
  } else {
    path = "opinion";
    body = {
      findings: value("findings"),
      impression: value("impression"),
      recommendations: value("recommendations"),
    };
    if (value("notes")) body.notes = value("notes");
  }
  if ((await confirmSign(kind)) !== "sign") return;
  await busy(form, async () => {
    try {
      await post(`/api/consultations/${encodeURIComponent(cid)}/${path}`, body);
      toast(t(kind === "referral" ? "cons.done.referred" : "cons.done.signed"));
      form.reset();
      syncKind();
      await load();
    } catch (err) {
      if (!handleAuthLoss(err)) showFormError(form, box, err);
    }
  });
});

// -- loading --------------------------------------------------------------------

async function load() {
  try {
    const { consultation } = await get(`/api/consultations/${encodeURIComponent(cid)}`);
    data = consultation;
  } catch (err) {
    if (handleAuthLoss(err)) return;
    const box = $("cons-error");
    box.textContent = err.status === 404 ? t("cons.not_found") : t("error.network");
    box.hidden = false;
    return;
  }
  $("cons-error").hidden = true;
  renderRequest(data);
  renderOpinion(data);
  renderTimeline(data.events || []);
  await loadPrecall();
  $("cons").removeAttribute("aria-busy");
  document.body.dataset.state = data.state;
  document.body.dataset.opinions = String(data.opinions.length);
}

async function start() {
  syncKind();
  new RecordsPanel({
    consultationId: cid,
    onDocuments: (documents) => {
      titles = new Map(documents.map((doc) => [doc.id, doc.title]));
      kinds = new Map(documents.map((doc) => [doc.id, doc.kind]));
      if (data) renderTimeline(data.events || []);
    },
  }).start();
  await load();
  reloadOnPush(load, (message) => message.type === "consultation.changed" && message.id === cid);
}

start();
