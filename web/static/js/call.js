// The call page's entry: the only module here that starts anything. It keeps
// the one current state (call-state.js), hands every server message to
// call-state.js's HANDLERS table, does the effects the handlers ask for, and
// has the views show the result: call-tiles.js (remote participants),
// call-chat.js (chat and timeline), call-controls.js (local preview, buttons,
// banner, recording indicator).
//
// A call the server records is relayed (joined says so): the page sends its
// camera and microphone once, on the recording leg (recording.js), and each
// other participant arrives on a receive-only RelayLink (relay-link.js) that
// the server offers. Otherwise the live call is a mesh: one Peer (peer.js) per
// other participant. Either is held here in `links`. The newcomer offers to everyone already there; after our
// signaling socket comes back (`joined` with resumed: true) we restart ICE
// towards each peer, since the media between browsers usually outlives a
// signaling outage.
//
// The records panel (records.js) beside the video takes part through two hooks
// only: it sends doc_open / doc_show with signaling.send, and this page hands it
// the doc_show messages and timeline events it receives.
//
// window.__call is a small read-only view for the browser tests (peer ids and
// their RTCPeerConnections, to call getStats); the page itself does not use it.

import * as call from "./call-state.js";
import { Chat, displayName } from "./call-chat.js";
import { Controls } from "./call-controls.js";
import { Tiles } from "./call-tiles.js";
import { VerifyPrompt } from "./call-verify.js";
import { openCamera, openMedia } from "./devices.js";
import { Peer } from "./peer.js";
import { QualityMeter } from "./quality.js";
import { RecordingLeg } from "./recording.js";
import { RelayLink } from "./relay-link.js";
import { RecordsPanel } from "./records.js";
import { CallSignaling } from "./signaling.js";
import { PAGE, setPushStatus } from "./ui.js";
import { Uplink } from "./uplink.js";
import { UplinkView } from "./uplink-view.js";

const STATS_MS = 2000;
// How long a connection to someone absent after a server restart is kept: the
// server's grace for a dropped place (30 s) plus a restart.
const HOLD_MS = 45000;
const me = PAGE.account || {};

let state = call.initialState({ consultationState: PAGE.state, me });
const links = new Map(); // peer id -> {peer, meter}
const local = { audio: null, video: null }; // our microphone and camera tracks

// Store a new state, do its effects, then show it.
function apply({ state: next, effects }) {
  state = next;
  for (const effect of effects) EFFECTS[effect.do](effect);
  render();
}

const update = (next) => apply({ state: next, effects: [] });

function render() {
  tiles.render(state, links);
  chat.render(state);
  controls.render(state);
  renderUplink();
}

function renderUplink() {
  uplinkView.render(uplink, { sendsVideo: call.mediaState(state).video, finished: Boolean(state.finished) });
}

const signaling = new CallSignaling({
  consultationId: PAGE.consultation_id,
  onMessage: (message) => {
    // A physician whose last identity check is too old is asked for a code
    // (call-verify.js) and joins once it is accepted.
    if (message.type === "error" && message.code === "verification_required" && !signaling.joined) {
      verifyPrompt.open();
      return;
    }
    apply(call.receive(state, message));
  },
  onStatus: (status) => {
    update(call.statusChanged(state, status));
    // The header's live-updates dot follows this page's one socket.
    setPushStatus(status === "joined" ? "online" : "connecting");
    records.setLive(status === "joined" && !state.finished);
  },
});

const verifyPrompt = new VerifyPrompt({
  consultationId: PAGE.consultation_id,
  home: PAGE.home || "/",
  onVerified: () => signaling.join(),
});

const records = new RecordsPanel({
  consultationId: PAGE.consultation_id,
  send: (message) => signaling.send(message),
  nameOf: (peerId) => displayName(state, peerId),
});

const recordingLeg = new RecordingLeg({
  signaling,
  onChange: (leg) => update(call.legChanged(state, leg)),
});

// Weak networks (uplink.js): audio before video on every connection that carries
// our camera and microphone, stills when the uplink cannot carry video. These
// two functions say which connections those are; uplink.js reads them anew
// every few seconds.
function uplinkConnections() {
  // Relayed, the links only receive: the recording leg is our one uplink.
  const peers = state.relay ? [] : [...links.values()].filter(({ peer }) => !peer.closed);
  const pcs = peers.map(({ peer }) => peer.pc);
  if (recordingLeg.pc) pcs.push(recordingLeg.pc);
  return pcs;
}
const uplink = new Uplink({
  senders: () => uplinkConnections().flatMap((pc) => pc.getSenders()),
  connections: uplinkConnections,
  onChange: renderUplink,
});

// What we send to each peer now: the tracks, and no video in audio-only mode.
function localState() {
  const audioOnly = state.media.audioOnly;
  return {
    audio: local.audio,
    video: audioOnly ? null : local.video,
    videoDirection: audioOnly ? "inactive" : "sendrecv",
  };
}

function sendMediaState() {
  signaling.send({ type: "media_state", ...call.mediaState(state) });
}

function closeLink(peerId) {
  const link = links.get(peerId);
  if (!link) return;
  link.peer.close();
  links.delete(peerId);
}

// The effects the handlers of call-state.js ask for (call.EFFECTS lists them).
const EFFECTS = {
  createPeer({ peerId, initiator }) {
    closeLink(peerId);
    const peer = new Peer({
      peerId,
      myId: state.myId,
      config: state.config,
      initiator,
      local: localState,
      signaling,
      onTrack: () => tiles.play(peerId, peer.stream),
      onStateChange: render,
      onBroken: (type, sdp) => {
        // Their description does not fit our connection (they are a new page
        // after all): a fresh connection answers their offer, or offers anew.
        if (links.get(peerId)?.peer !== peer) return;
        EFFECTS.createPeer({ peerId, initiator: type !== "offer" });
        if (type === "offer") links.get(peerId).peer.description("offer", sdp);
      },
    });
    links.set(peerId, { peer, meter: new QualityMeter() });
  },
  relayOffer({ peerId, sdp }) {
    closeLink(peerId);
    const peer = new RelayLink({
      peerId,
      config: state.config,
      signaling,
      onTrack: () => tiles.play(peerId, peer.stream),
      onStateChange: render,
    });
    links.set(peerId, { peer, meter: new QualityMeter() });
    peer.accept(sdp);
  },
  closePeer: ({ peerId }) => closeLink(peerId),
  restartPeer: ({ peerId }) => links.get(peerId)?.peer.restart(),
  description: ({ peerId, kind, sdp }) => links.get(peerId)?.peer.description(kind, sdp),
  candidate: ({ peerId, message }) => links.get(peerId)?.peer.candidate(message),
  sendMediaState,
  startRecording({ restart }) {
    const params = {
      config: state.config,
      tracks: [local.audio, state.media.audioOnly ? null : local.video],
      maxBitrate: state.recording.maxBitrate,
    };
    recordingLeg.want(params, { restart });
  },
  recordingAnswer: ({ sdp }) => recordingLeg.answer(sdp),
  recordingFailed: () => recordingLeg.failed(),
  recordingEnded: () => recordingLeg.ended(),
  holdPeer: ({ peerId }) => setTimeout(() => apply(call.releaseHeld(state, peerId)), HOLD_MS),
  recordsEvent: ({ event }) => records.onEvent(event),
  recordsShow: ({ message }) => records.onShow(message),
  finish() {
    for (const peerId of [...links.keys()]) closeLink(peerId);
    recordingLeg.stop(false); // the server finishes the file when we leave or end
    for (const track of [local.audio, local.video]) if (track) track.stop();
    controls.showLocal(null);
    records.setLive(false);
    uplink.stop();
  },
  warn: ({ code }) => console.warn("signaling error", code),
};

// -- the views and what their buttons do --------------------------------------------

const tiles = new Tiles();

const uplinkView = new UplinkView({ onSwitch: (on) => uplink.setManual(on) });

const chat = new Chat({
  onSend(text) {
    if (state.finished) return;
    const { ref, sent } = signaling.chat(text);
    update(call.chatSent(state, { ref, text, sent }));
  },
  onRetry(ref) {
    const line = state.chat.find((l) => l.ref === ref && l.mine && l.state === "failed");
    if (!line) return;
    const { sent } = signaling.chat(line.text, ref);
    update(call.chatRetried(state, ref, sent));
  },
});

const controls = new Controls({
  onMic() {
    if (!local.audio) return;
    update(call.micToggled(state));
    local.audio.enabled = state.media.micOn;
    sendMediaState();
  },
  onCam() {
    if (!local.video) return;
    update(call.camToggled(state));
    local.video.enabled = state.media.camOn;
    sendMediaState();
  },
  onAudioOnly: toggleAudioOnly,
  async onLeave() {
    await recordingLeg.flush(); // the file ends where the call did for us
    if (state.finished) return;
    signaling.close({ type: "leave" });
    apply(call.finish(state, "left"));
  },
  async onEnd() {
    // What the camera gave until now is recorded first (recording.js flush).
    await recordingLeg.flush();
    if (!state.finished) signaling.send({ type: "end" });
  },
});

async function toggleAudioOnly() {
  if (!state.media.audioOnly) {
    // Release the camera and stop video both ways: the link carries voice only.
    if (local.video) local.video.stop();
    local.video = null;
    update(call.audioOnlyChanged(state, { audioOnly: true, video: false }));
    controls.showLocal(null);
    for (const { peer } of links.values()) {
      await peer.replace("video", null);
      peer.setVideoDirection("inactive");
    }
    await recordingLeg.replace("video", null);
  } else {
    const { video, problems } = await openCamera();
    local.video = video;
    update(call.audioOnlyChanged(state, { audioOnly: false, video: Boolean(video), problems }));
    controls.showLocal(video);
    for (const { peer } of links.values()) {
      await peer.replace("video", video);
      peer.setVideoDirection("sendrecv");
    }
    await recordingLeg.replace("video", video);
  }
  render();
  sendMediaState();
}

async function sampleQuality() {
  for (const [peerId, { peer, meter }] of links) {
    if (peer.closed) continue;
    let quality;
    try {
      quality = await meter.sample(peer.pc);
    } catch {
      quality = null;
    }
    tiles.renderQuality(peerId, quality, meter.sparkline());
    if (peer.tune) peer.tune().catch(() => {});
  }
}

// -- start ------------------------------------------------------------------------

window.__call = Object.freeze({
  // For the browser tests only.
  get peerId() {
    return state.myId;
  },
  get state() {
    return { status: state.status, finished: state.finished, consultation: state.consultationState };
  },
  get connects() {
    return signaling.connects;
  },
  peers: () => [...state.participants.keys()],
  mode: () => (state.relay ? "relay" : "mesh"),
  pc: (peerId) => {
    const link = links.get(peerId);
    return link ? link.peer.pc : null;
  },
  // What the connection went through (peer.js `note`) and the candidates it traded.
  history: (peerId) => {
    const link = links.get(peerId);
    return link ? { events: link.peer.history, candidates: link.peer.candidates } : null;
  },
  recording: () => ({
    state: recordingLeg.state,
    peers: [...state.recording.peers],
    unrecorded: call.recordingView(state).unrecorded,
  }),
  remoteVideo: (peerId) => tiles.video(peerId),
  playoutMs: (peerId) => links.get(peerId)?.peer.playout?.targetMs ?? null,
  uplink: () => uplink.view(),
});

async function start() {
  render();
  records.start();
  apply(call.opened(state));
  if (state.finished) return;
  const { audio, video, problems } = await openMedia();
  local.audio = audio;
  local.video = video;
  controls.showLocal(video, me.display_name);
  update(call.mediaOpened(state, { audio: Boolean(audio), video: Boolean(video), problems }));
  signaling.start();
  setInterval(sampleQuality, STATS_MS);
  uplink.start();
}

start();
