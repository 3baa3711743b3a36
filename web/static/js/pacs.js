// The regional PACS in the records panel (records_panel.html's #pacs): the
// clinic's doctors list the consultation patient's studies on the county's
// imaging centre and attach one. The server searches by the patient's own
// identifiers and retrieves and stores the study (signaling/workflow/pacs.py);
// the panel then lists and opens it like any document.

import { get, post } from "./api.js";
import { $, el, t, toast } from "./ui.js";

export class PacsPane {
  // consultationId: whose patient; documents(): the panel's current list;
  // panel: the RecordsPanel (its errors, list and viewer).
  constructor({ consultationId, documents, panel }) {
    this.consultationId = consultationId;
    this.documents = documents;
    this.panel = panel;
    this.studies = []; // as listed, each with its state: listed, attaching, attached
  }

  start() {
    $("records-pacs-open").addEventListener("click", () => this.toggle());
    $("pacs-close").addEventListener("click", () => this.toggle(false));
  }

  toggle(open = $("pacs").hidden) {
    const pane = $("pacs");
    pane.hidden = !open;
    $("records-pacs-open").setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      if (this.panel.selectDocuments) this.panel.selectDocuments();
      this.search();
    }
  }

  async search() {
    const list = $("pacs-list");
    const status = $("pacs-status");
    this.panel.clearError();
    $("pacs-empty").hidden = true;
    status.textContent = t("pacs.searching");
    status.hidden = false;
    list.replaceChildren();
    try {
      const { studies } = await get(
        `/api/consultations/${encodeURIComponent(this.consultationId)}/pacs/studies`,
      );
      // A study whose instances are in this consultation's record already.
      const have = new Set(
        this.documents().map((d) => d.meta && d.meta.source && d.meta.source.study_uid).filter(Boolean),
      );
      this.studies = studies.map((study) => ({
        ...study,
        state: have.has(study.study_uid) ? "attached" : "listed",
      }));
      status.hidden = true;
      this.render();
    } catch (err) {
      status.hidden = true;
      this.panel.fail(err);
    }
  }

  render() {
    const items = this.studies.map((study) => {
      const button = el("button", {
        type: "button",
        class: "btn btn-small btn-primary pacs-attach",
        disabled: study.state !== "listed",
        text:
          study.state === "attaching"
            ? t("pacs.attaching")
            : study.state === "attached"
              ? t("pacs.attached")
              : t("pacs.attach"),
        on: { click: () => this.attach(study) },
      });
      const counts =
        study.series !== null || study.instances !== null
          ? t("pacs.counts", { series: study.series ?? "?", instances: study.instances ?? "?" })
          : "";
      return el(
        "li",
        { class: "pacs-item", dataset: { studyUid: study.study_uid, state: study.state } },
        el(
          "div",
          { class: "pacs-item-text" },
          el(
            "span",
            { class: "pacs-item-title" },
            study.modalities.length
              ? el("span", { class: "records-kind kind-dicom", text: study.modalities.join("/") })
              : null,
            el("span", { text: study.description || t("pacs.no_description") }),
          ),
          el("span", {
            class: "pacs-item-meta",
            text: [study.date, counts].filter(Boolean).join(" · "),
          }),
          study.matched_by === "name_birth_date"
            ? el("span", { class: "pacs-item-check", text: t("pacs.by_name") })
            : null,
        ),
        button,
      );
    });
    $("pacs-list").replaceChildren(...items);
    $("pacs-empty").hidden = items.length > 0;
  }

  async attach(study) {
    study.state = "attaching";
    this.render();
    this.panel.clearError();
    try {
      const { documents } = await post(
        `/api/consultations/${encodeURIComponent(this.consultationId)}/pacs/attach`,
        { study_uid: study.study_uid },
      );
      study.state = "attached";
      this.render();
      // The study opens below: the list makes room for it (reopened by the button).
      if (documents.length) this.toggle(false);
      toast(documents.length ? t("pacs.done", { count: documents.length }) : t("pacs.already"));
      await this.panel.loadDocuments().catch(() => {});
      // Opening it tells the others (doc_open): their lists pick it up.
      if (documents.length) this.panel.open(documents[0].id, { origin: "upload" });
    } catch (err) {
      study.state = "listed";
      this.render();
      this.panel.fail(err);
    }
  }
}
