// The shared-records panel: the consultation's documents and the patient's
// structured summary, on the call page (beside the video) and on the
// consultation page (records.html markup, included by both templates).
//
// Documents open inside the panel: PDF pages drawn on a <canvas> by the
// vendored PDF.js (loaded on first use, its worker a module worker from our own
// origin, so the strict CSP holds), JPEG/PNG on a <canvas>, DICOM as the
// server's PNG preview (on a <canvas>) with its technical tags, text reports as
// preformatted text. Every document carries the viewer's watermark
// (watermark.js): drawn into the canvas, over the text.
//
// In a call the panel gets `send` (the call's signaling) and takes part:
//   - opening a document from the list sends doc_open {document_id, page};
//   - "Show to all" sends doc_show {document_id, page}, and every page change
//     while showing sends it again, so the others follow;
//   - a doc_show from someone else (call.js routes it here) opens that document
//     at that page, with a line saying who shows it;
//   - timeline events about a document the panel does not know yet (uploaded
//     by another participant) reload the list.
// Without `send` (the consultation page) it is a plain viewer.
//
// DICOM images open in the frame viewer (dicomview.js): every frame, window and
// level. The clinic's doctors also search the regional PACS for the patient's
// studies ("Regional PACS") and attach one: the server retrieves and stores it
// as documents of the consultation (signaling/workflow/pacs.py).
//
// window.__records is a small read-only view for the browser tests.

import { ApiError, csrfToken, get } from "./api.js";
import { DicomViewer } from "./dicomview.js";
import { PacsPane } from "./pacs.js";
import { $, PAGE, el, errorMessage, formatDateTime, t, toast } from "./ui.js";
import { guardOverlay, imageCanvas, stampCanvas } from "./watermark.js";

const PDFJS = "/static/vendor/pdfjs-6.5.438/";
const TEXT_LIMIT = 512 * 1024; // a longer text report is cut (and downloadable)
const DOC_EVENTS = new Set(["document_shared", "document_opened", "document_shown"]);

let pdfjs = null;
function loadPdfjs() {
  // Only pages that open a PDF load the library (about 470 kB, plus the worker).
  if (!pdfjs) {
    pdfjs = import(`${PDFJS}pdf.min.mjs`).then((lib) => {
      lib.GlobalWorkerOptions.workerSrc = `${PDFJS}pdf.worker.min.mjs`;
      return lib;
    });
  }
  return pdfjs;
}

// PDF.js 6 closes a document through its loading task (the document proxy has
// no destroy() any more: calling it threw, and "All documents" did nothing).
function closePdf(pdf) {
  const task = pdf.loadingTask;
  if (task && typeof task.destroy === "function") task.destroy().catch(() => {});
}

function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} kB`;
}

function formatNumber(value) {
  return typeof value === "number" ? String(value) : String(value ?? "");
}

function rangeText(range, unit) {
  if (!range) return "";
  const { low, high } = range;
  let text;
  if (low !== null && low !== undefined && high !== null && high !== undefined) {
    text = `${formatNumber(low)}–${formatNumber(high)}`;
  } else if (low !== null && low !== undefined) {
    text = `≥ ${formatNumber(low)}`;
  } else {
    text = `≤ ${formatNumber(high)}`;
  }
  return unit ? `${text} ${unit}` : text;
}

// A status other than the plain "current fact" one is shown beside the entry
// (withdrawn entries never reach the page: the server counts them instead).
const STATUS_LABELS = new Set([
  "active", "recurrence", "relapse", "inactive", "remission", "resolved", "unconfirmed",
  "provisional", "differential", "completed", "intended", "stopped", "on-hold", "unknown",
  "registered", "preliminary", "amended", "corrected", "preparation", "in-progress",
]);
function statusTag(status, plain) {
  if (!status || plain.includes(status)) return null;
  const text = STATUS_LABELS.has(status) ? t(`records.status.${status}`) : status;
  return el("span", { class: "status-tag", dataset: { status }, text });
}

export class RecordsPanel {
  // consultationId: whose documents; send(message) -> bool: the call's
  // signaling (null outside a call); nameOf(peerId): a participant's name.
  // onDocuments(documents): called after each load of the list.
  constructor({ consultationId, send = null, nameOf = () => "", onDocuments = () => {} }) {
    this.consultationId = consultationId;
    this.onDocuments = onDocuments;
    this.send = send;
    this.nameOf = nameOf;
    this.live = Boolean(send);
    this.docs = [];
    this.byId = new Map();
    this.current = null; // {doc, page, pages, pdf, task}
    this.rendered = null; // {documentId, page, width, height} of the last drawn page
    this.showing = false; // we show the current document to all
    this.shownBy = null; // {name, documentId} when following someone's doc_show
    this.openSeq = 0;
    this.patientId = null;
    this.dicom = null; // the DicomViewer of the open document
    this.pacs = new PacsPane({
      consultationId,
      documents: () => this.docs,
      panel: this,
    });
    this.summaryLoaded = false;
    this.reloadTimer = null;
    this.resizeTimer = null;

    this.root = $("records");
    this.list = $("records-list");
    this.viewer = $("viewer");
    this.body = $("viewer-body");
    this.showButton = $("viewer-show");
    this.shownLine = $("records-shown");
    this.errorBox = $("records-error");
  }

  start() {
    this.wireTabs();
    $("viewer-back").addEventListener("click", () => this.closeViewer());
    $("viewer-prev").addEventListener("click", () => this.goto(this.current.page - 1));
    $("viewer-next").addEventListener("click", () => this.goto(this.current.page + 1));
    this.showButton.addEventListener("click", () => this.toggleShow());
    // Arrow and page keys turn the pages of a PDF once the page has the focus.
    this.body.tabIndex = 0;
    this.body.addEventListener("keydown", (event) => {
      if (!this.current || this.current.doc.kind !== "pdf") return;
      const step = { ArrowRight: 1, PageDown: 1, ArrowLeft: -1, PageUp: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      this.goto(this.current.page + step);
    });
    this.pacs.start();
    $("records-file").addEventListener("change", (event) => {
      const [file] = event.target.files;
      event.target.value = "";
      if (file) this.upload(file);
    });
    // Redraw the PDF page at the panel's new width (window resized, layout changed).
    let lastWidth = 0;
    new ResizeObserver(() => {
      const width = this.body.clientWidth;
      if (Math.abs(width - lastWidth) < 8) return;
      lastWidth = width;
      clearTimeout(this.resizeTimer);
      this.resizeTimer = setTimeout(() => {
        if (this.current && this.current.pdf) this.renderPage();
      }, 150);
    }).observe(this.body);
    this.exposeForTests();
    this.renderShowButton();
    this.loadDocuments().catch((err) => this.fail(err));
    this.checkUpload().catch(() => {});
  }

  fail(err) {
    this.errorBox.textContent = errorMessage(err);
    this.errorBox.hidden = false;
  }

  clearError() {
    this.errorBox.hidden = true;
    this.errorBox.textContent = "";
  }

  // -- tabs ---------------------------------------------------------------------

  wireTabs() {
    const tabs = [$("records-tab-documents"), $("records-tab-summary")];
    const select = (tab) => {
      for (const other of tabs) {
        const on = other === tab;
        other.setAttribute("aria-selected", on ? "true" : "false");
        other.tabIndex = on ? 0 : -1;
        $(other.getAttribute("aria-controls")).hidden = !on;
      }
      if (tab.id === "records-tab-summary" && !this.summaryLoaded) this.loadSummary();
    };
    tabs.forEach((tab, index) => {
      tab.addEventListener("click", () => select(tab));
      tab.addEventListener("keydown", (event) => {
        const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
        if (!step) return;
        const next = tabs[(index + step + tabs.length) % tabs.length];
        select(next);
        next.focus();
      });
    });
    this.selectDocuments = () => select(tabs[0]);
  }

  // -- list ---------------------------------------------------------------------

  async loadDocuments() {
    const { documents } = await get(
      `/api/consultations/${encodeURIComponent(this.consultationId)}/documents`,
    );
    this.docs = documents;
    this.byId = new Map(documents.map((d) => [d.id, d]));
    this.groupSeries();
    this.renderList();
    this.onDocuments(documents);
  }

  // The instances of one PACS series (a CT's slices) are one entry and one
  // viewer: grouped by series UID, in instance order; the first stands for all.
  groupSeries() {
    const groups = new Map();
    for (const doc of this.docs) {
      const source = doc.kind === "dicom" && doc.meta && doc.meta.source;
      if (!source || !source.series_uid) continue;
      if (!groups.has(source.series_uid)) groups.set(source.series_uid, []);
      groups.get(source.series_uid).push(doc);
    }
    this.seriesOf = new Map();
    for (const members of groups.values()) {
      members.sort(
        (a, b) =>
          (a.meta.source.instance_number ?? 1e9) - (b.meta.source.instance_number ?? 1e9) ||
          a.uploaded_at.localeCompare(b.uploaded_at),
      );
      for (const doc of members) this.seriesOf.set(doc.id, members);
    }
  }

  // The documents a DICOM document is shown with (itself alone if not a series).
  series(doc) {
    return (this.seriesOf && this.seriesOf.get(doc.id)) || [doc];
  }

  scheduleReload() {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.loadDocuments().catch(() => {}), 200);
  }

  renderList() {
    const shown = this.docs.filter((doc) => this.series(doc)[0] === doc);
    const items = shown.map((doc) => {
      const members = this.series(doc);
      const frames = members.reduce((n, d) => n + (Number(d.meta && d.meta.frames) || 1), 0);
      const who = doc.uploaded_by ? doc.uploaded_by.display_name : "";
      return el(
        "li",
        {
          class: "records-item",
          dataset: {
            documentId: doc.id,
            kind: doc.kind,
            current: this.current && this.current.doc.id === doc.id ? "true" : "false",
          },
        },
        el(
          "button",
          { type: "button", class: "records-open", on: { click: () => this.open(doc.id) } },
          el("span", { class: `records-kind kind-${doc.kind}`, "aria-hidden": "true", text: this.kindMark(doc.kind) }),
          el(
            "span",
            { class: "records-item-text" },
            el("span", { class: "records-item-title", text: doc.title }),
            el(
              "span",
              { class: "records-item-meta" },
              el("span", { text: t(`records.kind.${doc.kind}`) }),
              doc.kind === "pdf" && doc.pages
                ? el("span", { text: t("records.pages", { pages: doc.pages }) })
                : null,
              doc.kind === "dicom" && frames > 1
                ? el("span", { text: t("records.frames", { frames }) })
                : null,
            ),
            el("time", {
              class: "records-item-when",
              datetime: doc.uploaded_at,
              text: who
                ? t("records.uploaded_by", { name: who, time: formatDateTime(doc.uploaded_at) })
                : formatDateTime(doc.uploaded_at),
            }),
          ),
        ),
      );
    });
    this.list.replaceChildren(...items);
    $("records-empty").hidden = items.length > 0 || !this.viewer.hidden;
  }

  kindMark(kind) {
    return { pdf: "PDF", jpeg: "IMG", png: "IMG", dicom: "DCM", text: "TXT" }[kind] || "DOC";
  }

  // -- the viewer -----------------------------------------------------------------

  async open(documentId, { page = 1, origin = "user", by = null } = {}) {
    const seq = ++this.openSeq;
    this.clearError();
    if (!this.byId.has(documentId)) {
      try {
        await this.loadDocuments();
      } catch (err) {
        this.fail(err);
        return;
      }
      if (seq !== this.openSeq) return;
    }
    const found = this.byId.get(documentId);
    // Any instance of a series opens the series (at its first frame).
    const doc = found ? this.series(found)[0] : found;
    if (!doc) {
      this.fail(new ApiError(404, "not_found", "document not found"));
      return;
    }
    if (this.selectDocuments) this.selectDocuments();
    const same = this.current && this.current.doc.id === doc.id;
    if (!same) {
      // Another document: we stop showing the previous one.
      this.showing = false;
      this.dropPdf();
      this.dicom = null;
      this.current = {
        doc,
        page: doc.kind === "dicom" ? Math.max(1, Math.trunc(Number(page)) || 1) : 1,
        pages: doc.kind === "pdf" ? doc.pages || 1 : 1,
        pdf: null,
      };
    }
    this.shownBy = origin === "remote" ? { name: by || t("records.someone"), documentId: doc.id } : null;
    if (origin === "remote") this.showing = false;
    this.root.dataset.view = "viewer";
    this.viewer.hidden = false;
    this.list.hidden = true;
    $("records-empty").hidden = true;
    $("viewer-title").textContent = doc.title;
    this.viewer.dataset.documentId = doc.id;
    this.viewer.dataset.kind = doc.kind;
    this.renderFoot(doc);
    this.renderShowButton();
    if (!same) {
      this.body.replaceChildren(el("p", { class: "viewer-loading muted", text: t("records.loading") }));
      this.rendered = null;
    }
    if (origin !== "remote" && this.live && this.send) {
      this.send({ type: "doc_open", document_id: doc.id, ...(doc.kind === "pdf" ? { page } : {}) });
    }
    try {
      if (doc.kind === "pdf") {
        if (!this.current.pdf) await this.loadPdf(seq);
        if (seq !== this.openSeq) return;
        await this.goto(page, { broadcast: false });
      } else if (!same) {
        await this.renderOther(doc, seq);
      } else if (doc.kind === "dicom" && this.dicom && origin === "remote") {
        // Following someone's doc_show to another frame of the same image.
        this.current.page = Math.max(1, Math.trunc(Number(page)) || 1);
        await this.dicom.go(this.current.page - 1, { silent: true });
      }
    } catch (err) {
      if (seq !== this.openSeq) return;
      this.body.replaceChildren(
        el("p", { class: "viewer-failed", role: "alert", text: t("records.open_failed") }),
      );
      console.warn("document could not be shown", err && err.name);
    }
    this.renderShown();
    this.renderList();
  }

  closeViewer() {
    this.openSeq += 1;
    this.showing = false;
    this.shownBy = null;
    this.dropPdf();
    this.dicom = null;
    this.current = null;
    this.rendered = null;
    this.body.replaceChildren();
    this.viewer.hidden = true;
    this.list.hidden = false;
    this.root.dataset.view = "list";
    this.renderShown();
    this.renderList();
  }

  dropPdf() {
    if (this.current && this.current.pdf) {
      closePdf(this.current.pdf);
      this.current.pdf = null;
    }
    if (this.current && this.current.task) {
      this.current.task.cancel();
      this.current.task = null;
    }
  }

  async loadPdf(seq) {
    const lib = await loadPdfjs();
    const task = lib.getDocument({
      url: this.current.doc.content_url,
      // Range requests: a 100-page scan opens without downloading all of it.
      rangeChunkSize: 256 * 1024,
      isEvalSupported: false,
      enableXfa: false,
    });
    const pdf = await task.promise;
    if (seq !== this.openSeq) {
      closePdf(pdf);
      return;
    }
    this.current.pdf = pdf;
    this.current.pages = pdf.numPages;
  }

  // Go to a page of the current PDF (clamped); while we show the document to
  // all, the others are told (doc_show again) so that they follow.
  async goto(page, { broadcast = true } = {}) {
    const current = this.current;
    if (!current || current.doc.kind !== "pdf") return;
    const target = Math.min(Math.max(1, Math.trunc(Number(page) || 1)), current.pages || 1);
    const changed = target !== current.page;
    current.page = target;
    this.renderPager();
    if (broadcast && changed && this.showing) this.sendShow();
    if (broadcast && changed) this.shownBy = null; // we moved on by ourselves
    this.renderShown();
    if (current.pdf) await this.renderPage();
  }

  renderPager() {
    const current = this.current;
    const pager = $("viewer-pager");
    pager.hidden = !current || current.doc.kind !== "pdf";
    if (pager.hidden) return;
    $("viewer-page").textContent = t("records.page", { page: current.page, pages: current.pages });
    $("viewer-prev").disabled = current.page <= 1;
    $("viewer-next").disabled = current.page >= current.pages;
  }

  async renderPage() {
    const current = this.current;
    if (!current || !current.pdf) return;
    const number = current.page;
    if (current.task) {
      current.task.cancel();
      current.task = null;
    }
    const page = await current.pdf.getPage(number);
    if (this.current !== current || current.page !== number) return;
    const base = page.getViewport({ scale: 1 });
    const width = Math.max(200, this.body.clientWidth || 600);
    const scale = width / base.width;
    const viewport = page.getViewport({ scale });
    const ratio = window.devicePixelRatio || 1;
    const canvas = el("canvas", {
      class: "viewer-canvas",
      dataset: { page: String(number) },
      "aria-label": `${current.doc.title} · ${t("records.page", { page: number, pages: current.pages })}`,
      role: "img",
    });
    canvas.width = Math.floor(viewport.width * ratio);
    canvas.height = Math.floor(viewport.height * ratio);
    // The CSS size comes from the stylesheet (width: 100%; height: auto), which
    // keeps the page's proportions without an inline style (the CSP forbids it).
    const context = canvas.getContext("2d");
    const task = page.render({
      canvas,
      canvasContext: context,
      viewport,
      transform: ratio !== 1 ? [ratio, 0, 0, ratio, 0, 0] : null,
    });
    current.task = task;
    try {
      await task.promise;
    } catch (err) {
      if (err && err.name === "RenderingCancelledException") return;
      throw err;
    } finally {
      if (current.task === task) current.task = null;
    }
    if (this.current !== current || current.page !== number) return;
    stampCanvas(canvas);
    this.body.replaceChildren(canvas);
    this.rendered = {
      documentId: current.doc.id,
      page: number,
      width: canvas.width,
      height: canvas.height,
    };
    this.body.dataset.renderedPage = String(number);
  }

  async renderOther(doc, seq) {
    this.renderPager();
    let node;
    if (doc.kind === "jpeg" || doc.kind === "png") {
      node = this.picture(doc.content_url, "viewer-image", doc.title);
    } else if (doc.kind === "dicom") {
      node = this.dicomView(doc);
    } else if (doc.kind === "text") {
      const response = await fetch(doc.content_url, {
        credentials: "same-origin",
        headers: { Range: `bytes=0-${TEXT_LIMIT - 1}` },
      });
      if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, "");
      const text = await response.text();
      node = el("div", { class: "viewer-text-box" }, el("pre", { class: "viewer-text", text }));
      guardOverlay(node);
    } else {
      node = el("p", { class: "muted", text: t("records.open_failed") });
    }
    if (seq !== this.openSeq) return;
    this.body.replaceChildren(node);
    this.rendered = { documentId: doc.id, page: null, width: 0, height: 0 };
  }

  // An image on a canvas with the viewer's watermark drawn in.
  picture(src, className, label) {
    const canvas = imageCanvas(src, { className, label });
    canvas.ready.catch(() => {
      if (canvas.isConnected) canvas.replaceWith(el("p", { class: "muted", text: t("records.open_failed") }));
    });
    return canvas;
  }

  dicomView(doc) {
    const meta = doc.meta || {};
    const source = meta.source && meta.source.system === "pacs" ? meta.source : null;
    const rows = [
      ["records.dicom.modality", meta.modality],
      ["records.dicom.study_date", meta.study_date],
      ["records.dicom.body_part", meta.body_part],
      ["records.dicom.size", meta.columns && meta.rows ? `${meta.columns} × ${meta.rows}` : null],
      ["records.dicom.frames", meta.frames],
    ].filter(([, value]) => value !== null && value !== undefined && value !== "");
    const tags = el(
      "dl",
      { class: "viewer-tags" },
      rows.flatMap(([key, value]) => [el("dt", { text: t(key) }), el("dd", { text: String(value) })]),
    );
    const origin = source
      ? el("p", {
          class: "dicom-source small muted",
          text: t("dicom.from_pacs", { date: source.study_date || meta.study_date || "" }),
        })
      : null;
    if (meta.has_pixels) {
      const viewer = new DicomViewer(this.series(doc), {
        start: (this.current ? this.current.page : 1) - 1,
        onFrame: (frame) => this.frameMoved(frame),
      });
      this.dicom = viewer;
      viewer.start();
      return el("div", { class: "viewer-dicom-box" }, viewer.node, origin, tags);
    }
    const picture = doc.preview_url
      ? this.picture(doc.preview_url, "viewer-image viewer-dicom", doc.title)
      : el("p", { class: "notice notice-warn", text: t("records.no_preview") });
    return el("div", { class: "viewer-dicom-box" }, picture, origin, tags);
  }

  // The user moved to another frame: while showing to all, the others follow
  // once the scrolling settles (one doc_show, not one per frame scrolled past).
  frameMoved(frame) {
    if (!this.current || this.current.doc.kind !== "dicom") return;
    this.current.page = frame;
    this.shownBy = null; // we moved on by ourselves
    this.renderShown();
    if (!this.showing) return;
    clearTimeout(this.frameTimer);
    this.frameTimer = setTimeout(() => {
      if (this.showing && this.current && this.current.doc.kind === "dicom") this.sendShow();
    }, 250);
  }

  renderFoot(doc) {
    const who = doc.uploaded_by ? doc.uploaded_by.display_name : "";
    $("viewer-foot").replaceChildren(
      el("span", {
        text: [
          t(`records.kind.${doc.kind}`),
          formatSize(doc.size),
          who ? t("records.uploaded_by", { name: who, time: formatDateTime(doc.uploaded_at) }) : "",
        ]
          .filter(Boolean)
          .join(" · "),
      }),
      " ",
      el("a", { href: doc.content_url, download: doc.filename, text: t("records.download") }),
    );
  }

  // -- show to all ----------------------------------------------------------------

  setLive(live) {
    this.live = Boolean(live && this.send);
    if (!this.live) this.showing = false;
    this.renderShowButton();
  }

  toggleShow() {
    if (!this.current || !this.live) return;
    this.showing = !this.showing;
    if (this.showing) {
      this.shownBy = null;
      this.sendShow();
    }
    this.renderShowButton();
    this.renderShown();
  }

  sendShow() {
    const { doc, page } = this.current;
    // For a DICOM image "page" is the frame (from 1, across a series).
    const ok = this.send({
      type: "doc_show",
      document_id: doc.id,
      ...(doc.kind === "pdf" || doc.kind === "dicom" ? { page } : {}),
    });
    if (!ok) {
      // Not joined right now (reconnecting): nobody follows until shown again.
      this.showing = false;
      this.renderShowButton();
    }
  }

  renderShowButton() {
    const button = this.showButton;
    button.hidden = !this.send || !this.current;
    button.disabled = !this.live;
    button.setAttribute("aria-pressed", this.showing ? "true" : "false");
    button.textContent = this.showing ? t("records.showing") : t("records.show");
  }

  renderShown() {
    const line = this.shownLine;
    const by = this.shownBy;
    if (!by || !this.current || this.current.doc.id !== by.documentId) {
      line.hidden = true;
      line.textContent = "";
      return;
    }
    const { doc, page } = this.current;
    line.textContent =
      doc.kind === "pdf"
        ? t("records.shown_by", { name: by.name, title: doc.title, page })
        : doc.kind === "dicom" && this.dicom && this.dicom.frames > 1
          ? t("records.shown_by_frame", { name: by.name, title: doc.title, frame: page })
          : t("records.shown_by_single", { name: by.name, title: doc.title });
    line.hidden = false;
  }

  // -- messages routed from the call page ---------------------------------------------

  // A doc_show from another participant: open what they show, where they are.
  onShow(msg) {
    if (!msg || !msg.document_id) return;
    this.open(msg.document_id, {
      page: msg.page || 1,
      origin: "remote",
      by: this.nameOf(msg.from) || t("records.someone"),
    });
  }

  // Timeline events: a document we do not list yet was attached meanwhile.
  onEvent(event) {
    if (!event || !DOC_EVENTS.has(event.kind)) return;
    const id = event.data && event.data.document_id;
    if (id && !this.byId.has(id)) this.scheduleReload();
  }

  // -- upload (the clinic's doctors) -----------------------------------------------

  async checkUpload() {
    const me = PAGE.account || {};
    if (me.role !== "clinic_doctor") return;
    const { consultation } = await get(
      `/api/consultations/${encodeURIComponent(this.consultationId)}`,
    );
    // Only the patient's own clinic adds to the record (an invited county
    // doctor sees the documents but does not upload).
    if (consultation.requesting_institution.id !== me.institution_id) return;
    this.patientId = consultation.patient.id;
    $("records-upload").hidden = false;
    $("records-pacs-open").hidden = false;
  }

  upload(file) {
    if (!this.patientId) return;
    this.clearError();
    const progress = $("records-progress");
    const bar = $("records-progress-bar");
    const label = progress.querySelector(".records-progress-text");
    const setProgress = (fraction) => {
      const percent = `${Math.round(fraction * 100)}%`;
      bar.value = Math.round(fraction * 100);
      label.textContent = t("records.uploading", { name: file.name, percent });
    };
    setProgress(0);
    progress.hidden = false;
    $("records-file").disabled = true;
    const query = new URLSearchParams({ consultation_id: this.consultationId, filename: file.name });
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/patients/${encodeURIComponent(this.patientId)}/documents?${query}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) setProgress(event.loaded / event.total);
    });
    const done = () => {
      progress.hidden = true;
      $("records-file").disabled = false;
    };
    xhr.addEventListener("load", async () => {
      done();
      let payload = null;
      try {
        payload = JSON.parse(xhr.responseText);
      } catch {
        payload = null;
      }
      if (xhr.status === 201 && payload && payload.document) {
        toast(t("records.uploaded"));
        await this.loadDocuments().catch(() => {});
        // Opening it tells the others (doc_open): their lists pick it up.
        this.open(payload.document.id, { origin: "upload" });
        return;
      }
      const error = (payload && payload.error) || {};
      this.fail(
        new ApiError(xhr.status, error.code || `http_${xhr.status}`, error.message || "", error.fields),
      );
    });
    xhr.addEventListener("error", () => {
      done();
      this.fail(new ApiError(0, "network", "upload failed"));
    });
    xhr.send(file);
  }

  // -- summary ------------------------------------------------------------------

  async loadSummary() {
    const box = $("records-summary");
    box.replaceChildren(el("p", { class: "muted", text: t("records.loading") }));
    try {
      const { summary } = await get(
        `/api/consultations/${encodeURIComponent(this.consultationId)}/summary`,
      );
      this.summaryLoaded = true;
      box.replaceChildren(...this.summaryView(summary));
    } catch (err) {
      box.replaceChildren(
        el("p", { class: "form-error", role: "alert", text: t("records.summary.failed") }),
      );
      console.warn("summary", err && err.code);
    }
  }

  summaryView(s) {
    const keys = [
      "conditions", "medications", "allergies", "vitals", "labs", "other", "immunizations", "procedures",
    ];
    const withdrawn = s.withdrawn || {};
    const count = keys.reduce(
      (n, key) => n + (s[key] || []).length + (withdrawn[key] || 0),
      0,
    );
    if (count === 0) return [el("p", { class: "empty", text: t("records.summary.empty") })];
    // Entries the source withdrew (entered in error, refuted, cancelled) are never
    // listed; the section only says how many there are.
    const section = (key, content) =>
      el(
        "section",
        { class: "summary-section", dataset: { section: key } },
        el("h3", { text: t(`records.summary.${key}`) }),
        content,
        withdrawn[key]
          ? el("p", {
              class: "muted small summary-withdrawn",
              text: t("records.summary.withdrawn", { count: withdrawn[key] }),
            })
          : null,
      );

    const none = () => el("p", { class: "muted small", text: t("records.summary.none") });
    const listOf = (items, render) =>
      items.length ? el("ul", { class: "summary-list" }, items.map(render)) : none();

    const conditions = listOf(s.conditions || [], (c) =>
      el(
        "li",
        { dataset: { code: c.code || "" } },
        c.code ? el("span", { class: "code", text: c.code }) : null,
        el("span", { class: "summary-name", text: c.display || "" }),
        statusTag(c.clinical_status, ["active"]),
        statusTag(c.verification_status, ["confirmed"]),
        c.onset ? el("span", { class: "muted small", text: t("records.since", { date: c.onset }) }) : null,
      ),
    );
    const medications = listOf(s.medications || [], (m) =>
      el(
        "li",
        {},
        el("span", { class: "summary-name", text: m.display || "" }),
        statusTag(m.status, ["active"]),
        m.dosage ? el("span", { class: "muted small", text: m.dosage }) : null,
      ),
    );
    const allergies = listOf(s.allergies || [], (a) =>
      el(
        "li",
        { dataset: { criticality: a.criticality || "" } },
        el("span", { class: "summary-name", text: a.display || "" }),
        statusTag(a.clinical_status, ["active"]),
        statusTag(a.verification_status, ["confirmed"]),
        a.reaction ? el("span", { class: "muted small", text: a.reaction }) : null,
        a.criticality === "high"
          ? el("span", { class: "flag-tag flag-H", text: t("records.allergy.high") })
          : null,
      ),
    );
    // Procedures and vaccinations: what, when, and a status unless completed.
    const events = (items, when) =>
      listOf(items, (item) =>
        el(
          "li",
          { dataset: { code: item.code || "" } },
          el("span", { class: "summary-name", text: item.display || "" }),
          statusTag(item.status, ["completed"]),
          item[when] ? el("span", { class: "muted small", text: item[when] }) : null,
        ),
      );
    return [
      section("conditions", conditions),
      section("allergies", allergies),
      section("medications", medications),
      section("vitals", this.observationTable(s.vitals || [], none)),
      section("labs", this.observationTable(s.labs || [], none)),
      ...((s.other || []).length || withdrawn.other
        ? [section("other", this.observationTable(s.other || [], none))]
        : []),
      section("procedures", events(s.procedures || [], "performed")),
      section("immunizations", events(s.immunizations || [], "occurred")),
    ];
  }

  observationTable(items, none) {
    if (!items.length) return none();
    // One time for the table when every result has the same (one visit's set).
    const times = new Set(items.map((o) => o.effective_at || ""));
    const common = times.size === 1 ? [...times][0] : "";
    const head = el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col", text: t("records.col.item") }),
        el("th", { scope: "col", text: t("records.col.value") }),
        el("th", { scope: "col", text: t("records.col.range") }),
      ),
    );
    const rows = items.map((o) => {
      const flag = o.flag === "H" || o.flag === "L" ? o.flag : "";
      const value = `${formatNumber(o.value)}${o.unit ? ` ${o.unit}` : ""}`;
      return el(
        "tr",
        { dataset: { code: o.code || "", flag } },
        el(
          "th",
          { scope: "row" },
          el("span", { text: o.display || o.code || "" }),
          statusTag(o.status, ["final", "amended", "corrected"]),
          o.effective_at && !common
            ? el("time", { class: "muted small", datetime: o.effective_at, text: formatDateTime(o.effective_at) })
            : null,
        ),
        el(
          "td",
          { class: "obs-value" },
          el("span", { text: value }),
          flag
            ? el("abbr", {
                class: `flag-tag flag-${flag}`,
                title: t(`records.flag.${flag}`),
                text: flag === "H" ? "↑ H" : "↓ L",
              })
            : null,
        ),
        el("td", { class: "obs-range", text: rangeText(o.range, o.unit) }),
      );
    });
    const table = el("table", { class: "table summary-table" }, head, el("tbody", {}, rows));
    if (!common) return table;
    return el(
      "div",
      {},
      el("time", { class: "muted small summary-when", datetime: common, text: formatDateTime(common) }),
      table,
    );
  }

  // -- tests --------------------------------------------------------------------

  exposeForTests() {
    const panel = this;
    window.__records = Object.freeze({
      get state() {
        const c = panel.current;
        return {
          documentId: c ? c.doc.id : null,
          page: c ? c.page : null,
          pages: c ? c.pages : null,
          rendered: panel.rendered,
          showing: panel.showing,
          shownBy: panel.shownBy ? panel.shownBy.name : null,
          documents: panel.docs.map((d) => d.id),
          dicom: panel.dicom ? panel.dicom.state() : null,
          pacs: panel.pacs.studies.map((s) => ({ study_uid: s.study_uid, state: s.state })),
        };
      },
    });
  }
}
