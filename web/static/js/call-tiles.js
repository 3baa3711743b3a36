// The call page's remote tiles: one per participant (from #tile-template), with
// name, institution and role, microphone/camera/recording flags, the connection
// status, the remote video and the quality indicator. render(state, links) shows
// the participants of call-state.js; links maps a peer id to {peer} (peer.js),
// whose connection state the tile shows.

import { $, el, t } from "./ui.js";
import { recordingView } from "./call-state.js";

const LEVEL_NAMES = { 4: "good", 3: "fair", 2: "fair", 1: "poor", 0: "unknown" };

function formatKbps(kbps) {
  if (kbps === null || kbps === undefined) return "–";
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbit/s` : `${Math.round(kbps)} kbit/s`;
}

export class Tiles {
  constructor() {
    this.box = $("tiles");
    this.template = $("tile-template");
    this.empty = $("tiles-empty");
    this.tiles = new Map(); // peer id -> tile element, in the order they came
  }

  render(state, links) {
    for (const [peerId, tile] of this.tiles) {
      if (!state.participants.has(peerId)) {
        tile.remove();
        this.tiles.delete(peerId);
      }
    }
    for (const [peerId, participant] of state.participants) {
      let tile = this.tiles.get(peerId);
      if (!tile) {
        tile = this.template.content.firstElementChild.cloneNode(true);
        tile.dataset.peerId = peerId;
        this.tiles.set(peerId, tile);
        this.box.append(tile);
      }
      const link = links.get(peerId);
      renderTile(tile, participant, state, link ? link.peer : null);
    }
    this.box.dataset.count = String(state.participants.size);
    this.empty.hidden = state.participants.size > 0 || Boolean(state.finished);
  }

  video(peerId) {
    const tile = this.tiles.get(peerId);
    return tile ? tile.querySelector("video") : null;
  }

  // Show a peer's stream (again, when a track arrives or unmutes).
  play(peerId, stream) {
    const video = this.video(peerId);
    if (!video) return;
    if (video.srcObject !== stream) video.srcObject = stream;
    video.play().catch(() => {
      // Autoplay with sound refused (no user gesture yet): play muted and let
      // the next click anywhere turn the sound on.
      video.muted = true;
      video.play().catch(() => {});
      document.addEventListener("click", () => (video.muted = false), { once: true });
    });
  }

  // The quality indicator: bars, sparkline, relay tag and the detail list.
  renderQuality(peerId, q, sparkline) {
    const tile = this.tiles.get(peerId);
    if (!tile) return;
    const box = tile.querySelector(".quality");
    const lvl = q ? q.level : 0;
    box.dataset.level = String(lvl);
    box.dataset.relayed = q && q.relayed ? "true" : "false";
    box.querySelector("polyline").setAttribute("points", sparkline);
    box.querySelector(".path-tag").hidden = !(q && q.relayed);
    const summary = t(`call.quality.${LEVEL_NAMES[lvl]}`);
    const rows = q
      ? [
          [t("call.stat.rtt"), q.rttMs === null ? "–" : `${Math.round(q.rttMs)} ms`],
          [t("call.stat.loss"), `${q.lossPct.toFixed(1)} %`],
          [t("call.stat.bitrate"), formatKbps(q.kbps)],
          [t("call.stat.path"), q.relayed ? t("call.path.relay") : t("call.path.direct")],
        ]
      : [];
    box
      .querySelector(".quality-detail")
      .replaceChildren(
        ...rows.flatMap(([label, value]) => [el("dt", { text: label }), el("dd", { text: value })]),
      );
    box.title = [summary, ...rows.map(([label, value]) => `${label}: ${value}`)].join("\n");
    box.setAttribute("aria-label", summary);
  }
}

function renderTile(tile, participant, state, peer) {
  const { info, connected } = participant;
  const audioOnly = state.media.audioOnly;
  const name = info.title ? `${info.display_name} · ${info.title}` : info.display_name;
  tile.querySelector(".tile-name").textContent = name || "…";
  tile.querySelector(".tile-meta").textContent = [info.institution, info.role ? t(`role.${info.role}`) : ""]
    .filter(Boolean)
    .join(" · ");
  tile.querySelector(".avatar").textContent = (info.display_name || "?").slice(0, 1);
  tile.querySelector(".flag-mic").hidden = info.audio !== false;
  const receivesVideo = info.video !== false && !audioOnly;
  tile.querySelector(".flag-cam").hidden = receivesVideo;
  tile.dataset.video = receivesVideo ? "on" : "off";
  tile.dataset.connected = connected ? "true" : "false";
  const pcState = peer ? peer.pc.connectionState : "new";
  tile.dataset.pc = pcState;
  let status = "";
  if (!connected) status = t("call.peer.reconnecting");
  else if (pcState !== "connected") status = t("call.peer.connecting");
  tile.querySelector(".tile-status").textContent = status;
  const recorded = state.recording.peers.includes(tile.dataset.peerId);
  tile.querySelector(".flag-rec").hidden = !recorded;
  // In a live call whose consent covers recording, someone not being recorded
  // is shown as such (the server's word: its `recording` messages).
  const unrecorded = recordingView(state).unrecorded.includes(tile.dataset.peerId);
  tile.querySelector(".flag-norec").hidden = !unrecorded;
  tile.dataset.recorded = recorded ? "true" : unrecorded ? "false" : "";
}
