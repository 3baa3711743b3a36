// The call page: local preview, one tile per remote participant, controls
// (mute, camera, audio-only, leave, end), in-call chat from the timeline, a
// quality indicator per peer, and the state banner.
//
// The live call is a mesh: one Peer (peer.js) per other participant. The
// newcomer offers to everyone already there; after our signaling socket comes
// back (`joined` with resumed: true) we restart ICE towards each peer, since
// the media between browsers usually outlives a signaling outage.
//
// The records panel (records.js) beside the video takes part through two
// hooks only: it sends doc_open / doc_show with signaling.send, and this page
// hands it the doc_show messages and timeline events it receives.
//
// window.__call is a small read-only view for the browser tests (peer ids and
// their RTCPeerConnections, to call getStats); the page itself does not use it.

import { CallSignaling, FATAL_CODES } from "./signaling.js";
import { Peer } from "./peer.js";
import { openCamera, openMedia } from "./devices.js";
import { QualityMeter } from "./quality.js";
import { RecordingLeg } from "./recording.js";
import { RecordsPanel } from "./records.js";
import { LOCALE, PAGE, el, setPushStatus, t } from "./ui.js";

const STATS_MS = 2000;
const REC_ERRORS = new Set(["recording_failed", "recording_not_consented", "recording_unavailable"]);
const CHAT_KINDS = new Set(["chat", "joined", "rejoined", "left", "live", "ended", "invited"]);

const $ = (id) => document.getElementById(id);
const root = $("call");
const tilesBox = $("tiles");
const tileTemplate = $("tile-template");
const banner = $("call-banner");
const chatLog = $("chat-log");
const chatForm = $("chat-form");
const chatText = $("chat-text");
const micButton = $("ctl-mic");
const camButton = $("ctl-cam");
const audioOnlyButton = $("ctl-audio-only");
const leaveButton = $("ctl-leave");
const endButton = $("ctl-end");
const endDialog = $("end-dialog");
const localTile = $("local-tile");
const localVideo = $("local-video");

const clock = new Intl.DateTimeFormat(LOCALE, { hour: "2-digit", minute: "2-digit" });
const me = PAGE.account || {};

const call = {
  myId: null,
  config: null,
  consultationState: PAGE.state,
  status: "connecting", // signaling: connecting | joined | offline | closed
  joinedOnce: false,
  finished: null, // null | "ended" | "left" | "failed"
  failure: "",
  local: { audio: null, video: null },
  micOn: true,
  camOn: true,
  audioOnly: false,
  problems: [],
  entries: new Map(), // peer id -> {info, peer, tile, meter, connected}
  seenEvents: new Set(),
  recording: { available: false, allowed: false, maxBitrate: 0 },
  recordingPeers: new Set(), // who the server says is being recorded
};

const signaling = new CallSignaling({
  consultationId: PAGE.consultation_id,
  onMessage: handle,
  onStatus: (status) => {
    call.status = status;
    if (status === "joined") call.joinedOnce = true;
    // The header's live-updates dot follows this page's one socket.
    setPushStatus(status === "joined" ? "online" : "connecting");
    records.setLive(status === "joined" && !call.finished);
    renderBanner();
  },
});

const records = new RecordsPanel({
  consultationId: PAGE.consultation_id,
  send: (message) => signaling.send(message),
  nameOf,
});

const recordingLeg = new RecordingLeg({ signaling, onChange: renderRecording });
const recIndicator = $("rec-indicator");

// -- recording ----------------------------------------------------------------------

function renderRecording() {
  let state;
  if (!call.recording.available) state = "off";
  else if (!call.recording.allowed) state = "not_consented";
  else if (call.myId && call.recordingPeers.has(call.myId)) state = "recording";
  else state = recordingLeg.state === "off" ? "starting" : recordingLeg.state;
  if (call.finished) state = "off";
  recIndicator.dataset.state = state;
  recIndicator.dataset.peers = String(call.recordingPeers.size);
  let text = t(`call.rec.${state}`);
  const others = [...call.recordingPeers].filter((id) => id !== call.myId).length;
  if (others && state !== "not_consented") text += ` · ${t("call.rec.others", { count: others })}`;
  recIndicator.querySelector(".rec-text").textContent = text;
  for (const [peerId, entry] of call.entries) {
    const flag = entry.tile && entry.tile.querySelector(".flag-rec");
    if (flag) flag.hidden = !call.recordingPeers.has(peerId);
  }
}

function startRecording() {
  if (call.finished || !call.recording.available || !call.recording.allowed) return;
  recordingLeg.start({
    config: call.config,
    tracks: [call.local.audio, call.audioOnly ? null : call.local.video],
    maxBitrate: call.recording.maxBitrate,
  });
}

// -- local media ------------------------------------------------------------------

function localState() {
  return {
    audio: call.local.audio,
    video: call.audioOnly ? null : call.local.video,
    videoDirection: call.audioOnly ? "inactive" : "sendrecv",
  };
}

function mediaState() {
  return {
    audio: Boolean(call.local.audio && call.micOn),
    video: Boolean(call.local.video && call.camOn && !call.audioOnly),
  };
}

function sendMediaState() {
  signaling.send({ type: "media_state", ...mediaState() });
}

function showProblems() {
  const box = $("media-notice");
  const text = call.problems.map((p) => t(`call.media.${p}`)).join(" ");
  box.textContent = text;
  box.hidden = !text;
  box.dataset.problems = call.problems.join(" ");
}

function renderLocal() {
  const state = mediaState();
  localTile.dataset.video = state.video ? "on" : "off";
  localTile.querySelector(".flag-mic").hidden = state.audio;
  localTile.querySelector(".flag-cam").hidden = state.video;
  micButton.disabled = !call.local.audio || Boolean(call.finished);
  camButton.disabled = !call.local.video || call.audioOnly || Boolean(call.finished);
  audioOnlyButton.disabled = Boolean(call.finished) || (!call.local.video && !call.audioOnly);
  setToggle(micButton, !call.micOn, call.micOn ? t("call.mic.on") : t("call.mic.off"));
  setToggle(camButton, !call.camOn, call.camOn ? t("call.camera.on") : t("call.camera.off"));
  setToggle(
    audioOnlyButton,
    call.audioOnly,
    call.audioOnly ? t("call.audio_only.off") : t("call.audio_only.on"),
  );
}

function setToggle(button, pressed, label) {
  button.setAttribute("aria-pressed", pressed ? "true" : "false");
  button.querySelector(".ctl-label").textContent = label;
}

async function startMedia() {
  const { audio, video, problems } = await openMedia();
  call.local.audio = audio;
  call.local.video = video;
  call.problems = problems;
  showProblems();
  if (video) localVideo.srcObject = new MediaStream([video]);
  $("local-avatar").textContent = (me.display_name || "?").slice(0, 1);
  renderLocal();
}

micButton.addEventListener("click", () => {
  if (!call.local.audio) return;
  call.micOn = !call.micOn;
  call.local.audio.enabled = call.micOn;
  renderLocal();
  sendMediaState();
});

camButton.addEventListener("click", () => {
  if (!call.local.video) return;
  call.camOn = !call.camOn;
  call.local.video.enabled = call.camOn;
  renderLocal();
  sendMediaState();
});

audioOnlyButton.addEventListener("click", async () => {
  audioOnlyButton.disabled = true;
  if (!call.audioOnly) {
    // Release the camera and stop video both ways: the link carries voice only.
    call.audioOnly = true;
    if (call.local.video) call.local.video.stop();
    call.local.video = null;
    localVideo.srcObject = null;
    for (const entry of call.entries.values()) {
      if (!entry.peer) continue;
      await entry.peer.replace("video", null);
      entry.peer.setVideoDirection("inactive");
    }
    await recordingLeg.replace("video", null);
  } else {
    const { video, problems } = await openCamera();
    call.problems = problems;
    showProblems();
    call.audioOnly = false;
    call.local.video = video;
    call.camOn = true;
    if (video) localVideo.srcObject = new MediaStream([video]);
    for (const entry of call.entries.values()) {
      if (!entry.peer) continue;
      await entry.peer.replace("video", video);
      entry.peer.setVideoDirection("sendrecv");
    }
    await recordingLeg.replace("video", video);
  }
  root.dataset.audioOnly = call.audioOnly ? "true" : "false";
  renderLocal();
  renderTiles();
  sendMediaState();
});

// -- peers and tiles --------------------------------------------------------------

function entryFor(peerId, info = null) {
  let entry = call.entries.get(peerId);
  if (!entry) {
    const tile = tileTemplate.content.firstElementChild.cloneNode(true);
    tile.dataset.peerId = peerId;
    const video = tile.querySelector("video");
    entry = {
      info: info || { peer_id: peerId, display_name: "", audio: true, video: true },
      connected: true,
      peer: null,
      tile,
      video,
      meter: null,
      quality: null,
    };
    call.entries.set(peerId, entry);
    tilesBox.append(tile);
  } else if (info) {
    entry.info = { ...entry.info, ...info };
  }
  if (info && "connected" in info) entry.connected = info.connected;
  renderTile(entry);
  renderTiles();
  return entry;
}

function roleLabel(role) {
  return role ? t(`role.${role}`) : "";
}

function renderTile(entry) {
  const { info, tile } = entry;
  const name = info.title ? `${info.display_name} · ${info.title}` : info.display_name;
  tile.querySelector(".tile-name").textContent = name || "…";
  tile.querySelector(".tile-meta").textContent = [info.institution, roleLabel(info.role)]
    .filter(Boolean)
    .join(" · ");
  tile.querySelector(".avatar").textContent = (info.display_name || "?").slice(0, 1);
  tile.querySelector(".flag-mic").hidden = info.audio !== false;
  tile.querySelector(".flag-cam").hidden = info.video !== false && !call.audioOnly;
  const receivesVideo = info.video !== false && !call.audioOnly;
  tile.dataset.video = receivesVideo ? "on" : "off";
  tile.dataset.connected = entry.connected ? "true" : "false";
  const pcState = entry.peer ? entry.peer.pc.connectionState : "new";
  tile.dataset.pc = pcState;
  let status = "";
  if (!entry.connected) status = t("call.peer.reconnecting");
  else if (pcState !== "connected") status = t("call.peer.connecting");
  tile.querySelector(".tile-status").textContent = status;
  const rec = entry.tile && entry.tile.querySelector(".flag-rec");
  if (rec) rec.hidden = !call.recordingPeers.has(entry.info.peer_id);
}

function renderTiles() {
  const count = call.entries.size;
  tilesBox.dataset.count = String(count);
  $("tiles-empty").hidden = count > 0 || Boolean(call.finished);
  renderBanner();
}

function playVideo(entry) {
  const video = entry.video;
  if (video.srcObject !== entry.peer.stream) video.srcObject = entry.peer.stream;
  video.play().catch(() => {
    // Autoplay with sound refused (no user gesture yet): play muted and let
    // the next click anywhere turn the sound on.
    video.muted = true;
    video.play().catch(() => {});
    document.addEventListener("click", () => (video.muted = false), { once: true });
  });
}

function createPeer(peerId, initiator) {
  const entry = entryFor(peerId);
  if (entry.peer) entry.peer.close();
  entry.peer = new Peer({
    peerId,
    myId: call.myId,
    config: call.config,
    initiator,
    local: localState,
    signaling,
    onTrack: () => playVideo(entry),
    onStateChange: () => {
      renderTile(entry);
      renderBanner();
    },
  });
  entry.meter = new QualityMeter();
  return entry;
}

function dropPeer(peerId) {
  const entry = call.entries.get(peerId);
  if (!entry) return;
  if (entry.peer) entry.peer.close();
  entry.tile.remove();
  call.entries.delete(peerId);
  renderTiles();
}

// -- quality ----------------------------------------------------------------------

function formatKbps(kbps) {
  if (kbps === null || kbps === undefined) return "–";
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbit/s` : `${Math.round(kbps)} kbit/s`;
}

function renderQuality(entry) {
  const q = entry.quality;
  const box = entry.tile.querySelector(".quality");
  const levelNames = { 4: "good", 3: "fair", 2: "fair", 1: "poor", 0: "unknown" };
  const lvl = q ? q.level : 0;
  box.dataset.level = String(lvl);
  box.dataset.relayed = q && q.relayed ? "true" : "false";
  box.querySelector("polyline").setAttribute("points", entry.meter.sparkline());
  box.querySelector(".path-tag").hidden = !(q && q.relayed);
  const summary = t(`call.quality.${levelNames[lvl]}`);
  const rows = q
    ? [
        [t("call.stat.rtt"), q.rttMs === null ? "–" : `${Math.round(q.rttMs)} ms`],
        [t("call.stat.loss"), `${q.lossPct.toFixed(1)} %`],
        [t("call.stat.bitrate"), formatKbps(q.kbps)],
        [t("call.stat.path"), q.relayed ? t("call.path.relay") : t("call.path.direct")],
      ]
    : [];
  const detail = box.querySelector(".quality-detail");
  detail.replaceChildren(
    ...rows.flatMap(([label, value]) => [el("dt", { text: label }), el("dd", { text: value })]),
  );
  box.title = [summary, ...rows.map(([label, value]) => `${label}: ${value}`)].join("\n");
  box.setAttribute("aria-label", summary);
}

async function sampleQuality() {
  for (const entry of call.entries.values()) {
    if (!entry.peer || entry.peer.closed) continue;
    try {
      entry.quality = await entry.meter.sample(entry.peer.pc);
    } catch {
      entry.quality = null;
    }
    renderQuality(entry);
  }
}

// -- chat and timeline ------------------------------------------------------------

function eventText(event) {
  const name = event.actor_name || nameOf(event.actor_id);
  if (event.kind === "chat") return event.data && event.data.text;
  return t(`call.event.${event.kind}`, { name });
}

function nameOf(peerId) {
  if (peerId && peerId === call.myId) return me.display_name || t("call.you");
  const entry = peerId && call.entries.get(peerId);
  return entry ? entry.info.display_name : "";
}

// A chat line not (yet) on the record: our own while it is being sent and
// stored, another's between its relay and its stored event. The stored event
// replaces it; "chat_failed" (or our chat_not_stored error) marks it.
function unstoredLine({ ref, from, text, mine, status }) {
  return el(
    "li",
    { class: "chat-line", dataset: { kind: "chat", mine: mine ? "true" : "false", pending: "true", ref, from: from || "" } },
    el(
      "div",
      { class: "chat-who" },
      el("span", { class: "chat-name", text: mine ? t("call.you") : nameOf(from) }),
      el("span", { class: "chat-time", text: status }),
    ),
    el("p", { class: "chat-text", text }),
  );
}

function unstored(from, ref) {
  if (!ref) return null;
  return [...chatLog.querySelectorAll("li[data-pending]")].find(
    (li) =>
      li.dataset.ref === ref &&
      // Our own lines may predate the first join, when our id was not known yet.
      (li.dataset.from === from || (li.dataset.mine === "true" && from === call.myId)),
  );
}

function appendUnstored(line) {
  const pinned = chatLog.scrollHeight - chatLog.scrollTop - chatLog.clientHeight < 40;
  chatLog.append(line);
  if (pinned || line.dataset.mine === "true") chatLog.scrollTop = chatLog.scrollHeight;
}

function onRelayedChat(msg) {
  if (unstored(msg.from, msg.ref)) return;
  appendUnstored(
    unstoredLine({ ref: msg.ref, from: msg.from, text: msg.text, mine: false, status: clock.format(new Date()) }),
  );
}

function markNotStored(from, ref) {
  const line = unstored(from, ref);
  if (!line) return;
  line.dataset.failed = "true";
  const status = line.querySelector(".chat-time");
  status.textContent = t("call.chat.not_stored");
  if (line.dataset.mine === "true" && !call.finished) {
    const text = line.querySelector(".chat-text").textContent;
    const retry = el("button", { type: "button", class: "btn btn-small btn-primary-quiet chat-retry", text: t("call.chat.retry") });
    retry.addEventListener("click", () => {
      retry.remove();
      delete line.dataset.failed;
      const { sent } = signaling.chat(text, ref);
      status.textContent = sent ? t("call.chat.sending") : t("call.chat.pending");
    });
    line.querySelector(".chat-who").append(retry);
  }
}

function addEvent(event) {
  if (!event || !CHAT_KINDS.has(event.kind) || call.seenEvents.has(event.id)) return;
  call.seenEvents.add(event.id);
  const mine = event.actor_id && event.actor_id === call.myId;
  if (event.kind === "chat") {
    // The line is on the record now: the stored copy replaces the unstored one.
    const data = event.data || {};
    let line = unstored(event.actor_id, data.ref);
    if (!line && mine && !data.ref) {
      line = [...chatLog.querySelectorAll('li[data-pending][data-mine="true"]')].find(
        (li) => li.querySelector(".chat-text").textContent === data.text,
      );
    }
    if (line) line.remove();
  }
  const at = new Date(event.at);
  const time = el("time", {
    datetime: event.at,
    class: "chat-time",
    text: Number.isNaN(at.getTime()) ? "" : clock.format(at),
  });
  const line =
    event.kind === "chat"
      ? el(
          "li",
          { class: "chat-line", dataset: { kind: "chat", eventId: event.id, mine: mine ? "true" : "false" } },
          el(
            "div",
            { class: "chat-who" },
            el("span", { class: "chat-name", text: mine ? t("call.you") : event.actor_name || nameOf(event.actor_id) }),
            time,
          ),
          el("p", { class: "chat-text", text: event.data.text }),
        )
      : el(
          "li",
          { class: "chat-line chat-system", dataset: { kind: event.kind, eventId: event.id } },
          time,
          el("span", { text: eventText(event) }),
        );
  insertOrdered(line, event.id);
}

function insertOrdered(line, id) {
  const after = [...chatLog.children].find(
    (li) => li.dataset.eventId && Number(li.dataset.eventId) > id,
  );
  const pinned = chatLog.scrollHeight - chatLog.scrollTop - chatLog.clientHeight < 40;
  chatLog.insertBefore(line, after || chatLog.querySelector("li[data-pending]"));
  if (pinned) chatLog.scrollTop = chatLog.scrollHeight;
}

chatForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = chatText.value.trim();
  if (!text || call.finished) return;
  chatText.value = "";
  const { ref, sent } = signaling.chat(text);
  appendUnstored(
    unstoredLine({
      ref,
      from: call.myId,
      text,
      mine: true,
      status: sent ? t("call.chat.sending") : t("call.chat.pending"),
    }),
  );
});

// -- banner and the end of the call -----------------------------------------------

function renderBanner() {
  let kind = "info";
  let text;
  if (call.finished === "ended") {
    text = t("call.state.ended");
  } else if (call.finished === "left") {
    text = t("call.state.left");
  } else if (call.finished === "failed") {
    kind = "error";
    text = call.failure || t("call.state.failed");
  } else if (call.status === "offline" || (call.status === "connecting" && call.joinedOnce)) {
    kind = "warn";
    text = t("call.state.reconnecting");
  } else if (call.status !== "joined") {
    text = t("call.state.connecting");
  } else if (![...call.entries.values()].some((e) => e.connected)) {
    text = t("call.state.waiting");
  } else {
    kind = "live";
    text = t("call.state.live");
  }
  banner.dataset.kind = kind;
  banner.textContent = text;
  root.dataset.state = call.finished || (call.status === "joined" ? call.consultationState : call.status);
}

function finish(kind, failure = "") {
  if (call.finished) return;
  call.finished = kind;
  call.failure = failure;
  for (const entry of call.entries.values()) {
    if (entry.peer) entry.peer.close();
    entry.tile.remove();
  }
  call.entries.clear();
  recordingLeg.stop(false); // the server finishes the file when we leave or end
  for (const track of [call.local.audio, call.local.video]) if (track) track.stop();
  localVideo.srcObject = null;
  root.dataset.finished = kind;
  records.setLive(false);
  $("call-after").hidden = false;
  $("write-opinion").hidden = kind !== "ended";
  const rejoin = $("rejoin");
  rejoin.hidden = kind !== "left";
  rejoin.href = location.pathname;
  chatText.disabled = true;
  for (const button of chatForm.querySelectorAll("button")) button.disabled = true;
  renderLocal();
  renderTiles();
}

leaveButton.addEventListener("click", () => {
  signaling.close({ type: "leave" });
  finish("left");
});

endButton.addEventListener("click", () => {
  endDialog.returnValue = "";
  endDialog.showModal();
});
endDialog.addEventListener("close", () => {
  if (endDialog.returnValue === "end") signaling.send({ type: "end" });
});

// -- signaling messages -----------------------------------------------------------

function onJoined(msg) {
  call.myId = msg.peer_id;
  call.config = {
    iceServers: msg.ice_servers || [],
    iceTransportPolicy: msg.ice_transport_policy || "all",
  };
  call.consultationState = msg.state;
  for (const event of msg.events || []) addEvent(event);
  // What is still unconfirmed goes out again right after this (signaling.js).
  for (const li of chatLog.querySelectorAll('li[data-pending][data-mine="true"]:not([data-failed])')) {
    li.querySelector(".chat-time").textContent = t("call.chat.sending");
  }
  const present = new Set(msg.peers.map((p) => p.peer_id));
  for (const peerId of [...call.entries.keys()]) {
    if (!present.has(peerId)) dropPeer(peerId); // left while we were away
  }
  for (const info of msg.peers) {
    const entry = entryFor(info.peer_id, info);
    if (entry.peer && msg.resumed) {
      entry.peer.restart(); // the media may still flow; new paths if it does not
    } else if (info.connected) {
      createPeer(info.peer_id, true); // we are new here: we offer
    } else if (entry.peer) {
      entry.peer.close();
      entry.peer = null;
    }
  }
  sendMediaState();
  renderTiles();
  const rec = msg.recording || {};
  call.recording = {
    available: Boolean(rec.available),
    allowed: Boolean(rec.allowed),
    maxBitrate: rec.max_bitrate || 0,
  };
  call.recordingPeers = new Set(rec.recording || []);
  startRecording();
  renderRecording();
}

function handle(msg) {
  switch (msg.type) {
    case "joined":
      onJoined(msg);
      break;
    case "peer_joined": {
      const entry = entryFor(msg.peer.peer_id, { ...msg.peer, connected: true });
      if (entry.peer && !msg.resumed) {
        // A new session of that person (their place had lapsed): they offer anew.
        entry.peer.close();
        entry.peer = null;
      }
      renderTile(entry);
      break;
    }
    case "peer_left":
      dropPeer(msg.peer_id);
      break;
    case "peer_state": {
      const entry = call.entries.get(msg.peer_id);
      if (entry) {
        entry.connected = msg.connected;
        renderTile(entry);
        renderBanner();
      }
      break;
    }
    case "offer": {
      let entry = call.entries.get(msg.from);
      if (!entry || !entry.peer) entry = createPeer(msg.from, false);
      entry.peer.description("offer", msg.sdp);
      break;
    }
    case "answer": {
      const entry = call.entries.get(msg.from);
      if (entry && entry.peer) entry.peer.description("answer", msg.sdp);
      break;
    }
    case "candidate": {
      const entry = call.entries.get(msg.from);
      if (entry && entry.peer) entry.peer.candidate(msg);
      break;
    }
    case "media_state": {
      const entry = call.entries.get(msg.from);
      if (entry) {
        entry.info.audio = msg.audio;
        entry.info.video = msg.video;
        renderTile(entry);
      }
      break;
    }
    case "chat":
      onRelayedChat(msg);
      break;
    case "chat_failed":
      markNotStored(msg.from, msg.ref);
      break;
    case "event":
      addEvent(msg.event);
      records.onEvent(msg.event);
      break;
    case "doc_show":
      records.onShow(msg);
      break;
    case "rec_answer":
      recordingLeg.answer(msg.sdp);
      break;
    case "recording":
      if (msg.state === "recording") call.recordingPeers.add(msg.peer_id);
      else call.recordingPeers.delete(msg.peer_id);
      if (msg.peer_id === call.myId && msg.state === "failed") recordingLeg.failed();
      renderRecording();
      break;
    case "state":
      call.consultationState = msg.state;
      if (msg.state !== "accepted" && msg.state !== "live") finish("ended");
      renderBanner();
      break;
    case "error":
      if (msg.code === "chat_not_stored") {
        markNotStored(call.myId, msg.ref);
      } else if (REC_ERRORS.has(msg.code)) {
        recordingLeg.failed();
        renderRecording();
      } else if (FATAL_CODES.has(msg.code) && !signaling.joined) {
        const key = msg.code === "unauthenticated" ? "call.error.session" : `call.error.${msg.code}`;
        finish("failed", t(key));
      } else if (msg.code !== "unknown_peer") {
        // unknown_peer: a message raced a peer's disconnect; the resume fixes it.
        console.warn("signaling error", msg.code);
      }
      break;
    default:
      break;
  }
}

// -- start ------------------------------------------------------------------------

window.__call = Object.freeze({
  // For the browser tests only.
  get peerId() {
    return call.myId;
  },
  get state() {
    return { status: call.status, finished: call.finished, consultation: call.consultationState };
  },
  get connects() {
    return signaling.connects;
  },
  peers: () => [...call.entries.keys()],
  pc: (peerId) => {
    const entry = call.entries.get(peerId);
    return entry && entry.peer ? entry.peer.pc : null;
  },
  recording: () => ({ state: recordingLeg.state, peers: [...call.recordingPeers] }),
  remoteVideo: (peerId) => {
    const entry = call.entries.get(peerId);
    return entry ? entry.video : null;
  },
});

async function start() {
  renderLocal();
  renderBanner();
  records.start();
  if (PAGE.state !== "accepted" && PAGE.state !== "live") {
    const over = ["ended", "signed", "referred"].includes(PAGE.state);
    finish(over ? "ended" : "failed", over ? "" : t("call.error.not_joinable"));
    return;
  }
  await startMedia();
  signaling.start();
  setInterval(sampleQuality, STATS_MS);
}

start();
