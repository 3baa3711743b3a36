// The DICOM viewer of the records panel: every frame of a DICOM document,
// scrolled frame by frame, with window/level.
//
// The server decodes one frame at a time (GET /api/documents/{id}/frame?index=)
// and sends its values (float32 after the modality LUT, or 8-bit RGB) with their
// description in the X-Frame header; the window is applied here, so dragging it
// costs no request. Frames are kept in memory while the document is open, so
// scrolling back and forth fetches each one once (each fetch is audited).
//
// A series spread over several documents (a CT's single-frame instances, as
// attached from the PACS) is one viewer: its frames are the instances' frames in
// order, each fetched from its own document.
//
// Frames: mouse wheel over the image, the slider, the buttons, or the arrow /
// Page / Home / End keys once the image has the focus. Window: drag on the image
// (left-right: width, up-down: centre) or a preset. The picture carries the
// viewer's watermark like every document (watermark.js).

import { ApiError } from "./api.js";
import { el, t } from "./ui.js";
import { stampCanvas } from "./watermark.js";

// Centre/width of the usual CT windows (Hounsfield units).
const PRESETS = {
  brain: [40, 80],
  soft: [40, 400],
  lung: [-600, 1500],
  bone: [400, 1800],
};
const DISPLAY = 768; // the canvas's longer side, in device pixels

function round(value) {
  return Math.abs(value) >= 100 ? String(Math.round(value)) : String(Math.round(value * 10) / 10);
}

export class DicomViewer {
  // docs: the series' documents in order (one for a plain DICOM file); start:
  // the frame to open at (from 0); onFrame(number): the user moved to frame
  // ``number`` (from 1), for "Show to all".
  constructor(docs, { start = 0, onFrame = () => {} } = {}) {
    this.docs = docs;
    this.doc = docs[0];
    this.onFrame = onFrame;
    this.parts = [];
    let offset = 0;
    for (const doc of docs) {
      const frames = Math.max(1, Number(doc.meta && doc.meta.frames) || 1);
      this.parts.push({ doc, offset, frames });
      offset += frames;
    }
    this.frames = offset;
    this.index = Math.min(Math.max(0, Math.trunc(start) || 0), this.frames - 1);
    this.drawn = null; // index of the frame on the canvas
    this.cache = new Map(); // index -> Promise<{info, values}>
    this.info = null; // the first frame's description (rows, columns, window)
    this.center = null;
    this.width = null;
    this.preset = "file";
    this.failed = false;
    this.clean = document.createElement("canvas"); // the frame, unmarked
    this.node = this.build();
  }

  build() {
    const doc = this.doc;
    this.canvas = el("canvas", {
      class: "dicom-canvas",
      role: "img",
      tabindex: "0",
      "aria-label": doc.title,
      dataset: { frame: "" },
    });
    this.frameLabel = el("output", { class: "dicom-frame-label", "aria-live": "polite" });
    this.slider = el("input", {
      type: "range",
      class: "dicom-slider",
      min: "1",
      max: String(this.frames),
      value: "1",
      step: "1",
      "aria-label": t("dicom.frame", { frame: "", frames: this.frames }).trim(),
    });
    this.prev = el("button", {
      type: "button",
      class: "btn btn-small dicom-prev",
      "aria-label": t("dicom.previous"),
      text: "‹",
    });
    this.next = el("button", {
      type: "button",
      class: "btn btn-small dicom-next",
      "aria-label": t("dicom.next"),
      text: "›",
    });
    this.presetSelect = el(
      "select",
      { class: "dicom-preset", "aria-label": t("dicom.window") },
      ["file", "full", "brain", "soft", "lung", "bone"].map((key) =>
        el("option", { value: key, text: t(`dicom.preset.${key}`) }),
      ),
      el("option", { value: "custom", text: t("dicom.preset.custom"), disabled: true }),
    );
    this.windowLabel = el("output", { class: "dicom-window-label" });
    this.reset = el("button", { type: "button", class: "btn btn-small btn-quiet", text: t("dicom.reset") });
    this.overlay = el("span", { class: "dicom-overlay", "aria-hidden": "true" });
    const stage = el("div", { class: "dicom-stage" }, this.canvas, this.overlay);
    const frameRow = el(
      "div",
      { class: "dicom-row dicom-frames", hidden: this.frames < 2 },
      this.prev,
      this.slider,
      this.next,
      this.frameLabel,
    );
    const windowRow = el(
      "div",
      { class: "dicom-row dicom-window" },
      el("label", { class: "dicom-window-name" }, t("dicom.window"), " ", this.presetSelect),
      this.windowLabel,
      this.reset,
    );
    const hint = el("p", { class: "dicom-hint small muted", text: t("dicom.hint") });
    this.wire();
    return el("div", { class: "dicom-viewer" }, stage, frameRow, windowRow, hint);
  }

  wire() {
    this.prev.addEventListener("click", () => this.go(this.index - 1));
    this.next.addEventListener("click", () => this.go(this.index + 1));
    this.slider.addEventListener("input", () => this.go(Number(this.slider.value) - 1));
    this.canvas.addEventListener(
      "wheel",
      (event) => {
        if (this.frames < 2 || event.deltaY === 0) return;
        event.preventDefault();
        this.go(this.index + (event.deltaY > 0 ? 1 : -1));
      },
      { passive: false },
    );
    this.canvas.addEventListener("keydown", (event) => {
      const step = {
        ArrowDown: 1,
        ArrowRight: 1,
        PageDown: 5,
        ArrowUp: -1,
        ArrowLeft: -1,
        PageUp: -5,
      }[event.key];
      if (step) {
        event.preventDefault();
        this.go(this.index + step);
      } else if (event.key === "Home" || event.key === "End") {
        event.preventDefault();
        this.go(event.key === "Home" ? 0 : this.frames - 1);
      }
    });
    this.presetSelect.addEventListener("change", () => this.usePreset(this.presetSelect.value));
    this.reset.addEventListener("click", () => this.usePreset("file"));
    // Window/level by dragging: right widens, up brightens (lowers the centre).
    let drag = null;
    this.canvas.addEventListener("pointerdown", (event) => {
      if (!this.info || this.info.samples !== 1) return;
      drag = { x: event.clientX, y: event.clientY, center: this.center, width: this.width };
      this.canvas.setPointerCapture(event.pointerId);
      this.canvas.focus();
    });
    this.canvas.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const span = Math.max(1, (this.info.high - this.info.low) || this.width);
      const k = span / 256;
      const center = drag.center + (event.clientY - drag.y) * k;
      const width = drag.width + (event.clientX - drag.x) * k;
      this.setWindow(center, width, "custom");
    });
    const end = () => {
      drag = null;
    };
    this.canvas.addEventListener("pointerup", end);
    this.canvas.addEventListener("pointercancel", end);
  }

  async start() {
    try {
      const index = this.index;
      const first = await this.frame(index);
      this.info = first.info;
      this.presetSelect.disabled = first.info.samples !== 1;
      this.setWindow(first.info.center, first.info.width, "file", false);
      if (this.index === index) this.draw(index, first);
      stampCanvas(this.canvas, this.clean);
      if (this.index !== index) await this.go(this.index, { silent: true, force: true });
      this.prefetch(index + 1);
    } catch (err) {
      this.failed = true;
      this.node.replaceChildren(el("p", { class: "notice notice-warn", text: t("dicom.failed") }));
      console.warn("dicom frame", err && err.code);
    }
  }

  frame(index) {
    if (!this.cache.has(index)) {
      const part = this.parts.find((p) => index >= p.offset && index < p.offset + p.frames);
      const local = index - part.offset;
      const url = `/api/documents/${encodeURIComponent(part.doc.id)}/frame?index=${local}`;
      const load = fetch(url, { credentials: "same-origin" }).then(async (response) => {
        if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, "");
        const info = JSON.parse(response.headers.get("X-Frame"));
        const buffer = await response.arrayBuffer();
        const values = info.samples === 1 ? new Float32Array(buffer) : new Uint8Array(buffer);
        return { info, values };
      });
      load.catch(() => this.cache.delete(index));
      this.cache.set(index, load);
    }
    return this.cache.get(index);
  }

  prefetch(index) {
    if (index >= 0 && index < this.frames) this.frame(index).catch(() => {});
  }

  // Move to frame ``target`` (from 0); ``silent``: someone else's doc_show moved
  // us, so nobody is told.
  async go(target, { silent = false, force = false } = {}) {
    if (this.failed) return;
    const index = Math.min(Math.max(0, Math.trunc(target) || 0), this.frames - 1);
    if (!force && index === this.index && this.drawn === index) return;
    const moved = index !== this.index;
    this.index = index;
    this.renderLabels();
    if (moved && !silent) this.onFrame(index + 1);
    if (!this.info) return; // start() draws it
    try {
      const loaded = await this.frame(index);
      if (this.index !== index) return; // scrolled on meanwhile
      this.draw(index, loaded);
      this.prefetch(index + (index >= (this.drawnBefore ?? 0) ? 1 : -1));
      this.drawnBefore = index;
    } catch (err) {
      console.warn("dicom frame", err && err.code);
    }
  }

  usePreset(key) {
    if (!this.info) return;
    if (key === "file") this.setWindow(this.info.center, this.info.width, key);
    else if (key === "full" && this.current) {
      const { low, high } = this.current.info;
      this.setWindow((low + high) / 2, Math.max(1, high - low), key);
    } else if (PRESETS[key]) this.setWindow(PRESETS[key][0], PRESETS[key][1], key);
  }

  setWindow(center, width, preset, redraw = true) {
    this.center = center;
    this.width = Math.max(1, width);
    this.preset = preset;
    this.presetSelect.value = preset;
    this.renderLabels();
    if (redraw && this.current) this.draw(this.drawn, this.current);
  }

  renderLabels() {
    const frame = this.index + 1;
    this.slider.value = String(frame);
    this.frameLabel.textContent = t("dicom.frame", { frame, frames: this.frames });
    this.canvas.dataset.frame = String(frame);
    const windowText =
      this.info && this.info.samples === 1
        ? t("dicom.window_values", { center: round(this.center), width: round(this.width) })
        : "";
    this.windowLabel.textContent = windowText;
    this.overlay.textContent = [
      this.frames > 1 ? `${frame}/${this.frames}` : "",
      windowText && `C ${round(this.center)} W ${round(this.width)}`,
    ]
      .filter(Boolean)
      .join(" · ");
    this.prev.disabled = this.index <= 0;
    this.next.disabled = this.index >= this.frames - 1;
  }

  draw(index, loaded) {
    const { info, values } = loaded;
    const { rows, columns } = info;
    if (this.clean.width !== columns || this.clean.height !== rows) {
      this.clean.width = columns;
      this.clean.height = rows;
      const scale = DISPLAY / Math.max(rows, columns);
      this.canvas.width = Math.round(columns * scale);
      this.canvas.height = Math.round(rows * scale);
    }
    const ctx = this.clean.getContext("2d");
    const image = ctx.createImageData(columns, rows);
    const out = image.data;
    if (info.samples === 1) {
      const low = this.center - this.width / 2;
      const scale = 255 / this.width;
      const invert = info.photometric === "MONOCHROME1";
      for (let i = 0, j = 0; i < values.length; i += 1, j += 4) {
        let v = (values[i] - low) * scale;
        v = v < 0 ? 0 : v > 255 ? 255 : v;
        if (invert) v = 255 - v;
        out[j] = out[j + 1] = out[j + 2] = v;
        out[j + 3] = 255;
      }
    } else {
      for (let i = 0, j = 0; i < values.length; i += 3, j += 4) {
        out[j] = values[i];
        out[j + 1] = values[i + 1];
        out[j + 2] = values[i + 2];
        out[j + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
    this.current = loaded;
    this.drawn = index;
    this.canvas.dataset.drawn = String(index + 1);
    if (this.canvas.restamp) this.canvas.restamp();
  }

  // For the browser tests: what is on the canvas (the unmarked frame's hash).
  state() {
    let hash = 0;
    if (this.drawn !== null) {
      const data = this.clean.getContext("2d").getImageData(0, 0, this.clean.width, this.clean.height).data;
      hash = 2166136261;
      for (let i = 0; i < data.length; i += 4) hash = Math.imul(hash ^ data[i], 16777619) >>> 0;
    }
    return {
      frame: this.index + 1,
      frames: this.frames,
      drawn: this.drawn === null ? null : this.drawn + 1,
      center: this.center,
      width: this.width,
      preset: this.preset,
      hash,
      failed: this.failed,
    };
  }
}
