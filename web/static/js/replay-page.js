// The replay page: one player per participant's recording, kept in step on one
// clock (the session's time since it went live); one play/pause/seek drives all,
// and each player's drift is corrected. Beside it the timeline: clicking an
// event seeks every player to its moment, the current event is highlighted, and
// a document that was shown can be opened from there. The lanes (SVG) draw who
// was recorded when, the events, and the playhead.
//
// Every player carries the viewer's watermark (watermark.js), which the page
// offers no way to hide; the native controls, picture-in-picture and
// fullscreen of the bare <video> (which would show it without the mark) are
// kept away. "Export with watermark" asks the server for a copy with the mark
// burned in and downloads it when ready.
//
// The page comes with its replay (opened and audited by the server as it
// rendered the page) and with one <video> per recording, which the browser
// starts loading while it parses the HTML: the first frame does not wait for
// this script or for another request. Each video stays hidden (CSS) while no
// watermark is over it. The playhead starts at the first recorded moment, so
// that the first picture shows at once and Play starts it without a seek.
//
// The page comes with a first watermark over each player (an SVG the server
// drew with the HTML) and with each player's place at the first recorded
// moment, and replay.js loads this script once the first picture is up (or
// after a wait): the picture waits for no script. This script then places the
// players, puts its live watermark in place of the first one, and builds the
// timeline, the lanes and the transport. Chromium hands a video's bytes to its
// demuxer on the page's main thread: in a trace of this page, building the
// timeline (and the layout its text forced) held that thread for 110 ms while
// the first bytes of the video waited.
//
// window.__replay is a read-only view for the browser tests.

import { get, post } from "./api.js";
import { $, LOCALE, PAGE, STRINGS, el, t } from "./ui.js";
import { guardOverlay } from "./watermark.js";

const DRIFT_S = 0.3; // a player further off than this is put back in step
const SETTLED_S = 0.02; // a seek asked for moves a player at least this far off
const START_WAIT_MS = 3000; // the longest the clock waits for a player to start
const TICK_MS = 250;
const EXPORT_POLL_MS = 1000;
const FIRST_PICTURE_WAIT_MS = 1500; // the longest the rest of the page waits for it
const SVG_NS = "http://www.w3.org/2000/svg";

const root = $("replay");
const playersBox = $("players");
const playButton = $("play");
const seekInput = $("seek");
const clockText = $("clock");
const lanes = $("lanes");
const timelineList = $("timeline");

const state = {
  length: 0, // seconds from the session's start to its last moment
  time: 0, // current position, seconds
  playing: false,
  starting: false, // playing, but the clock waits for a player to start
  startedAt: 0, // performance.now() when play began
  startedFrom: 0, // position when play began
  players: [], // {rec, video, figure, offset, duration}
  events: [], // {event, offset, node}
  current: -1,
};

function fmt(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

function eventText(event) {
  const name = (event.actor && event.actor.display_name) || "";
  if (event.kind === "chat") return `${name}: ${event.data.text || ""}`;
  // The replay's own wording first, else the kind's one label (web/i18n.py).
  for (const key of [`replay.event.${event.kind}`, `event.${event.kind}`]) {
    if (Object.prototype.hasOwnProperty.call(STRINGS, key)) {
      return t(key, { name, kind: event.kind, title: (event.data && event.data.title) || "" });
    }
  }
  return t("replay.event.other", { kind: event.kind });
}

// -- clock --------------------------------------------------------------------------

function now() {
  if (!state.playing) return state.time;
  if (state.starting) {
    // The clock waits for the players to start (or seek) before it runs: run
    // ahead of them, it would find them "off" and seek them again and again.
    if (performance.now() - state.startedAt < START_WAIT_MS) return state.startedFrom;
    started(); // a player that does not start does not hold the others
  }
  const t0 = state.startedFrom + (performance.now() - state.startedAt) / 1000;
  return Math.min(t0, state.length);
}

// Where a replay starts: the first recorded moment (0 without recordings).
function firstMoment() {
  return state.players.length ? Math.min(...state.players.map((p) => p.offset)) : 0;
}

// Run the clock from state.time once a player inside its recording plays.
function restart() {
  state.startedFrom = state.time;
  state.startedAt = performance.now();
  state.starting = state.playing && state.players.some((p) => inside(p, state.time));
  for (const p of state.players) place(p, true);
  render();
}

// A player started (its "playing" event): the clock runs from now.
function started() {
  if (!state.starting) return;
  state.starting = false;
  state.startedAt = performance.now();
}

function seek(seconds) {
  state.time = Math.max(0, Math.min(seconds, state.length));
  restart();
}

function play() {
  if (state.time >= state.length) state.time = firstMoment();
  state.playing = true;
  restart();
}

function pause() {
  state.time = now();
  state.playing = false;
  state.starting = false;
  for (const p of state.players) p.video.pause();
  render();
}

function inside(p, time) {
  const local = time - p.offset;
  return local >= 0 && local <= p.duration;
}

// Put one player where the clock says: before its recording starts and after it
// ends it rests (and says so); inside, it plays and is corrected if it drifts.
function place(p, force = false) {
  const local = state.time - p.offset;
  let where = "inside";
  if (local < 0) where = "before";
  else if (local > p.duration) where = "after";
  p.figure.dataset.state = where;
  p.figure.querySelector(".player-note").textContent =
    where === "before" ? t("replay.before") : where === "after" ? t("replay.after") : "";
  if (where !== "inside") {
    if (!p.video.paused) p.video.pause();
    const rest = where === "before" ? 0 : p.duration;
    if (Math.abs(p.video.currentTime - rest) > DRIFT_S) p.video.currentTime = rest;
    return;
  }
  // Setting currentTime seeks even to where the video is (a fresh load would
  // wait for it): only when it is off.
  const off = Math.abs(p.video.currentTime - local);
  if (off > (force ? SETTLED_S : DRIFT_S)) p.video.currentTime = local;
  if (state.playing && p.video.paused) p.video.play().catch(() => {});
  if (!state.playing && !p.video.paused) p.video.pause();
}

function tick() {
  if (state.playing) {
    state.time = now();
    if (state.time >= state.length) pause();
    for (const p of state.players) place(p);
  }
  render();
}

// -- drawing ------------------------------------------------------------------------

function render() {
  playButton.textContent = state.playing ? t("replay.pause") : t("replay.play");
  clockText.textContent = `${fmt(state.time)} / ${fmt(state.length)}`;
  if (document.activeElement !== seekInput) seekInput.value = String(state.time);
  let current = -1;
  state.events.forEach((e, i) => {
    if (e.offset <= state.time + 0.05) current = i;
  });
  if (current !== state.current) {
    if (state.current >= 0) state.events[state.current].node.removeAttribute("aria-current");
    if (current >= 0) {
      const node = state.events[current].node;
      node.setAttribute("aria-current", "true");
      node.scrollIntoView({ block: "nearest" });
    }
    state.current = current;
  }
  const head = lanes.querySelector(".playhead");
  if (head && state.length > 0) {
    const x = (state.time / state.length) * 1000;
    head.setAttribute("x1", String(x));
    head.setAttribute("x2", String(x));
  }
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function drawLanes() {
  const rows = state.players.length || 1;
  const height = rows * 22 + 26;
  lanes.setAttribute("viewBox", `0 0 1000 ${height}`);
  lanes.replaceChildren();
  const x = (seconds) => (state.length ? (seconds / state.length) * 1000 : 0);
  state.players.forEach((p, i) => {
    lanes.append(svg("rect", { class: "lane", x: 0, y: i * 22 + 4, width: 1000, height: 16, rx: 3 }));
    const bar = svg("rect", {
      class: "segment",
      x: x(p.offset),
      y: i * 22 + 4,
      width: Math.max(2, x(p.duration)),
      height: 16,
      rx: 3,
    });
    const title = svg("title", {});
    title.textContent = p.rec.participant.display_name || "";
    bar.append(title);
    lanes.append(bar);
  });
  const y = rows * 22 + 6;
  for (const e of state.events) {
    const mark = svg("line", { class: `mark mark-${e.event.kind}`, x1: x(e.offset), x2: x(e.offset), y1: y, y2: y + 14 });
    lanes.append(mark);
  }
  lanes.append(svg("line", { class: "playhead", x1: 0, x2: 0, y1: 0, y2: height }));
}

lanes.addEventListener("click", (event) => {
  const box = lanes.getBoundingClientRect();
  if (!box.width) return;
  seek(((event.clientX - box.left) / box.width) * state.length);
});

// -- watermarked export -------------------------------------------------------------

async function exportCopy(rec, button, status) {
  button.disabled = true;
  const show = (text) => {
    status.textContent = text;
  };
  show(t("replay.exporting", { percent: "0%" }));
  try {
    let { export: job } = await post(`/api/recordings/${rec.id}/export?watermark=1`);
    while (job.state === "queued" || job.state === "running") {
      // The server reports progress only when asked.
      await new Promise((resolve) => setTimeout(resolve, EXPORT_POLL_MS));
      ({ export: job } = await get(job.url));
      show(t("replay.exporting", { percent: `${Math.round(job.progress * 100)}%` }));
    }
    if (job.state !== "done") throw new Error(job.state);
    show(t("replay.export_ready"));
    const link = el("a", { href: job.content_url, download: "" });
    document.body.append(link);
    link.click();
    link.remove();
  } catch {
    show(t("replay.export_failed"));
  } finally {
    button.disabled = false;
  }
}

// A video made fullscreen by itself would show without the overlay: leave.
document.addEventListener("fullscreenchange", () => {
  const full = document.fullscreenElement;
  if (full && full.tagName === "VIDEO") document.exitFullscreen().catch(() => {});
});

// -- building -----------------------------------------------------------------------

function buildPlayers(recordings) {
  // The figures came with the page, one per recording, in this order.
  const figures = new Map([...playersBox.querySelectorAll("figure.player")].map((f) => [f.dataset.recordingId, f]));
  for (const rec of recordings) {
    const figure = figures.get(rec.id);
    if (!figure) continue;
    const video = figure.querySelector("video");
    figure.querySelector(".player-export-btn").addEventListener("click", (event) =>
      exportCopy(rec, event.currentTarget, figure.querySelector(".player-export-status")),
    );
    // No context menu on the video: it offers "Show controls", "Save video
    // as" and picture-in-picture, all without the watermark.
    figure.addEventListener("contextmenu", (event) => event.preventDefault());
    video.addEventListener("playing", started);
    state.players.push({
      rec,
      video,
      figure,
      offset: (rec.offset_ms || 0) / 1000,
      duration: (rec.duration_ms || 0) / 1000,
    });
  }
  playersBox.dataset.count = String(recordings.length);
}

function buildTimeline(events) {
  const clock = new Intl.DateTimeFormat(LOCALE, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  for (const event of events) {
    const offset = Math.max(0, event.offset_ms / 1000);
    const time = clock.format(new Date(event.at));
    const button = el(
      "button",
      { type: "button", class: "event-seek", dataset: { offset: String(offset) } },
      el("span", { class: "event-time", text: fmt(offset) }),
      el("span", { class: "event-text", text: eventText(event) }),
    );
    button.title = time;
    button.addEventListener("click", () => seek(offset));
    const node = el("li", { class: "event", dataset: { kind: event.kind, eventId: String(event.id) } }, button);
    const documentId = event.data && event.data.document_id;
    if (documentId) {
      node.append(
        el("a", {
          class: "event-doc",
          href: `/api/documents/${documentId}/content`,
          target: "_blank",
          rel: "noopener",
          text: t("replay.open_document"),
        }),
      );
    }
    timelineList.append(node);
    state.events.push({ event, offset, node });
  }
}

// Resolves once every player has shown its first picture (or failed to), and
// the frame with it has been drawn; at the latest after FIRST_PICTURE_WAIT_MS.
function firstPictures() {
  const shown = state.players.map(
    (p) =>
      new Promise((resolve) => {
        if (p.video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA || p.video.error) resolve();
        p.video.addEventListener("loadeddata", resolve, { once: true });
        p.video.addEventListener("error", resolve, { once: true });
      }),
  );
  const waited = new Promise((resolve) => setTimeout(resolve, FIRST_PICTURE_WAIT_MS));
  return Promise.race([Promise.all(shown), waited]).then(
    () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))),
  );
}

function start() {
  const data = PAGE.replay;
  if (!data) {
    root.dataset.state = "error";
    const box = $("replay-error");
    box.textContent = t("replay.not_found");
    box.hidden = false;
    return;
  }
  buildPlayers(data.recordings);
  const ends = [
    ...state.players.map((p) => p.offset + p.duration),
    ...data.events.map((e) => Math.max(0, e.offset_ms / 1000)),
  ];
  state.length = Math.max(0, ...ends);
  // The first recorded moment: what comes before it has no picture to show.
  state.time = firstMoment();
  for (const p of state.players) place(p, true);
  firstPictures().then(() => finish(data));
}

// The rest of the page, once the first pictures are up: the live watermark in
// place of the one the page came with, the timeline, the lanes, the transport.
function finish(data) {
  for (const p of state.players) {
    guardOverlay(p.figure);
    p.figure.querySelector(":scope > svg.wm-first")?.remove();
  }
  buildTimeline(data.events);
  seekInput.max = String(state.length);
  seekInput.disabled = false;
  playButton.disabled = state.players.length === 0;
  if (!state.players.length) {
    const box = $("replay-error");
    box.textContent = t("replay.no_recordings");
    box.hidden = false;
  }
  drawLanes();
  root.dataset.state = "ready";
  render();
  setInterval(tick, TICK_MS);
}

playButton.addEventListener("click", () => (state.playing ? pause() : play()));
seekInput.addEventListener("input", () => seek(Number(seekInput.value)));

window.__replay = Object.freeze({
  // For the browser tests only.
  time: () => now(),
  playing: () => state.playing,
  offsets: () => state.players.map((p) => p.offset),
  players: () =>
    state.players.map((p) => ({
      id: p.rec.id,
      offset: p.offset,
      currentTime: p.video.currentTime,
      videoWidth: p.video.videoWidth,
      paused: p.video.paused,
      state: p.figure.dataset.state,
    })),
});

start();
