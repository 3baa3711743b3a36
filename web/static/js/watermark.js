// The viewer's watermark: their name, institution and the current time, tiled
// diagonally, semi-transparent, drifting slowly and redrawn every few seconds,
// over replayed video and over documents opened in the records panel.
//
// There is no control to hide it. Two ways of drawing it:
//   - guardOverlay(host): a <canvas> laid over the host element (pointer-events
//     none). A MutationObserver puts a fresh one back if it is removed or its
//     attributes are changed (hidden, class, style), so deleting the node in
//     the page does not take the mark away.
//   - stampCanvas(canvas) / imageCanvas(src): the mark is drawn INTO the
//     canvas that shows the document (a PDF page, an image, a DICOM preview),
//     redrawn from an off-screen clean copy; a screenshot or a "save image" of
//     the content carries it.
// The text comes from the page data the server puts in (PAGE.account).
//
// Every drawn canvas carries data-watermark (the text drawn) and
// data-watermark-at (when), for the browser tests.

import { LOCALE, PAGE } from "./ui.js";

const REFRESH_MS = 3000; // the time shown is at most this old
const DRIFT_STEP = 0.07; // of a tile, per redraw: a slow diagonal drift
const ANGLE = -0.42; // radians (about -24 degrees): rising to the right
const timeFormat = new Intl.DateTimeFormat(LOCALE, {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});

// The lines of the mark: who is looking, from where, and now.
export function watermarkLines(now = new Date()) {
  const me = PAGE.account || {};
  const who = [me.display_name, me.institution_name].filter(Boolean).join(" · ");
  return [who, timeFormat.format(now)].filter(Boolean);
}

// Draw the tiled lines over a width x height area of ctx (device pixels).
// phase (0..1) shifts the tiles along the diagonal.
//
// One brick cell (a tile and, below it, the next row's tile shifted by half) is
// drawn on a small canvas and repeated as a pattern over the rotated area: the
// text is drawn three times per redraw instead of once per tile. Drawing the
// glyphs of a CJK font was what the canvas spent its time on (46 ms per frame
// for a 1280-pixel player in a Chromium trace of the replay page, on the path
// to its first picture, which shows only under the mark).
export function drawTiles(ctx, width, height, lines, phase = 0) {
  const size = Math.max(12, Math.round(Math.min(width, height) / 18));
  const font = `${size}px "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif`;
  const lineHeight = Math.round(size * 1.3);
  ctx.save();
  ctx.font = font;
  const textWidth = Math.max(...lines.map((l) => ctx.measureText(l).width));
  ctx.restore();
  const tileW = Math.ceil(textWidth + size * 3);
  const tileH = Math.ceil(lineHeight * lines.length + size * 2.5);
  const cell = document.createElement("canvas");
  cell.width = tileW;
  cell.height = tileH * 2;
  const c = cell.getContext("2d");
  c.font = font;
  c.textBaseline = "top";
  c.lineJoin = "round";
  c.lineWidth = Math.max(2, size / 6);
  c.strokeStyle = "rgba(0, 0, 0, 0.28)";
  c.fillStyle = "rgba(255, 255, 255, 0.42)";
  const margin = Math.ceil(c.lineWidth); // the stroke reaches past the text's box
  const put = (x, y) =>
    lines.forEach((line, i) => {
      c.strokeText(line, x + margin, y + margin + i * lineHeight);
      c.fillText(line, x + margin, y + margin + i * lineHeight);
    });
  put(0, 0);
  // Brick pattern (no clean columns): the second row's tile, wrapped around the cell.
  put(tileW / 2, tileH);
  put(-tileW / 2, tileH);
  const diagonal = Math.hypot(width, height);
  ctx.save();
  ctx.translate(width / 2, height / 2);
  ctx.rotate(ANGLE);
  ctx.translate(phase * tileW, phase * tileH);
  ctx.fillStyle = ctx.createPattern(cell, "repeat");
  ctx.fillRect(-diagonal - tileW, -diagonal - 2 * tileH, 2 * (diagonal + tileW), 2 * (diagonal + 2 * tileH));
  ctx.restore();
}

function mark(canvas, lines) {
  canvas.dataset.watermark = lines.join(" | ");
  canvas.dataset.watermarkAt = new Date().toISOString();
}

// One timer for every mark on the page; each drawer says whether it is still
// needed (false once its element has left the page for good).
const drawers = new Set();
let timer = null;
function schedule(draw) {
  drawers.add(draw);
  if (!timer) {
    timer = setInterval(() => {
      for (const d of [...drawers]) if (d() === false) drawers.delete(d);
      if (!drawers.size) {
        clearInterval(timer);
        timer = null;
      }
    }, REFRESH_MS);
  }
}

// -- over an element ----------------------------------------------------------------

export function guardOverlay(host) {
  let canvas = null;
  let phase = Math.random();
  let seen = false; // the host was on the page once

  const draw = () => {
    if (!canvas) return;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(host.clientWidth * ratio));
    const height = Math.max(1, Math.round(host.clientHeight * ratio));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    const lines = watermarkLines();
    drawTiles(ctx, width, height, lines, phase);
    mark(canvas, lines);
  };

  const attributes = new MutationObserver(() => place()); // hidden, style, class...
  const place = () => {
    if (canvas) canvas.remove();
    canvas = document.createElement("canvas");
    canvas.className = "wm-overlay";
    canvas.setAttribute("aria-hidden", "true");
    host.append(canvas);
    attributes.disconnect();
    attributes.observe(canvas, { attributes: true, attributeFilter: ["class", "style", "hidden", "id"] });
    draw();
  };

  new MutationObserver(() => {
    if (!canvas || canvas.parentNode !== host) place();
  }).observe(host, { childList: true });
  new ResizeObserver(() => draw()).observe(host);
  place();
  schedule(() => {
    if (host.isConnected) seen = true;
    else if (seen) return false;
    phase = (phase + DRIFT_STEP) % 1;
    if (!canvas || canvas.parentNode !== host) place();
    else draw();
    return true;
  });
  return { redraw: draw };
}

// -- into a canvas ------------------------------------------------------------------

// canvas already shows the content: keep a clean copy off the page and redraw
// content + mark from it every few seconds (the time moves on, the mark drifts).
export function stampCanvas(canvas, source = null) {
  let clean = source;
  if (!clean) {
    clean = document.createElement("canvas");
    clean.width = canvas.width;
    clean.height = canvas.height;
    clean.getContext("2d").drawImage(canvas, 0, 0);
  }
  let phase = Math.random();
  let seen = false;
  const draw = () => {
    const ctx = canvas.getContext("2d");
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(clean, 0, 0, canvas.width, canvas.height);
    ctx.restore();
    const lines = watermarkLines();
    drawTiles(ctx, canvas.width, canvas.height, lines, phase);
    mark(canvas, lines);
  };
  draw();
  // A canvas whose content changes (the DICOM viewer's frames) redraws at once.
  canvas.restamp = draw;
  schedule(() => {
    if (canvas.isConnected) seen = true;
    else if (seen) return false;
    phase = (phase + DRIFT_STEP) % 1;
    draw();
    return true;
  });
  return canvas;
}

// An image shown as a canvas with the mark drawn in (instead of an <img>, which
// could be saved or looked at without it). Same-origin images only (the
// canvas must stay readable).
export function imageCanvas(src, { className, label }) {
  const canvas = document.createElement("canvas");
  canvas.className = className;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", label);
  const image = new Image();
  const loaded = new Promise((resolve, reject) => {
    image.addEventListener("load", resolve, { once: true });
    image.addEventListener("error", reject, { once: true });
  });
  image.src = src;
  canvas.ready = loaded.then(() => {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    stampCanvas(canvas, image);
    return canvas;
  });
  return canvas;
}
