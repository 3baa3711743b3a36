// The call page's state, as plain data, and every change to it as a pure
// function: no DOM, no WebSocket, no RTCPeerConnection (tests/js runs it in
// Node). The entry module (call.js) keeps the one current state, hands each
// server message to HANDLERS[message.type], stores the state it returns, does the
// effects (peer connections, the recording leg, the records panel) and asks the
// views (call-tiles.js, call-chat.js, call-controls.js) to show it.
//
// A handler or action returns {state, effects}; an effect is {do: name, ...}
// with the names listed at EFFECTS below. The state is never changed in place:
// each change makes new objects for what changed (the rest is shared).
//
// The state:
//   myId, config               our peer id and the ICE settings, from `joined`
//   me                         {display_name} of the signed-in account
//   consultationState          the consultation's state (accepted, live, ...)
//   status                     signaling: connecting | joined | offline | closed
//   joinedOnce                 whether we have been in the call (reconnect banner)
//   finished, failureKey       null | "ended" | "left" | "failed"; a string key
//   media                      {audio, video: have a track; micOn, camOn,
//                               audioOnly, problems: [device problem codes]}
//   participants               Map peer id -> {info, connected, linked}; linked:
//                               we hold a peer connection towards them
//   chat                       [line]: the timeline lines the call shows, see chatLines
//   recording                  {available, allowed, maxBitrate, peers: [peer ids
//                               being recorded, as the server says], leg:
//                               off|starting|recording|failed, was: whether
//                               anyone was recorded in this call}
//
// A chat line is {key, kind, mine, text, ...} and, for chat, one of
//   pending    not on the record yet: ours being sent (sent: true) or waiting for
//              the next join (sent: false), or another's relayed line;
//   failed     the server could not store it (ours may be sent again: retryable);
//   confirmed  the stored timeline event (eventId, at); it replaces the pending
//              line with the same ref from the same person.
// System lines (joined, left, ...) are confirmed events of their own kind.

export const CHAT_KINDS = new Set([
  "chat",
  "joined",
  "rejoined",
  "left",
  "live",
  "ended",
  "invited",
  "recording_interrupted",
]);
export const REC_ERRORS = new Set([
  "recording_failed",
  "recording_not_consented",
  "recording_unavailable",
  "already_recording",
  "not_recording",
]);
// Join errors that no reconnect can cure: stop and tell the user (signaling.js
// stops reconnecting on them too).
export const FATAL_CODES = new Set([
  "not_participant",
  "not_joinable",
  "consent_required",
  "already_in_call",
  "call_full",
  "not_found",
  "unauthenticated",
]);
// The consultation states in which a call can go on.
export const CALL_STATES = new Set(["accepted", "live"]);
const OVER_STATES = new Set(["ended", "signed", "referred"]);

// The effects a handler may ask for (call.js does them):
//   createPeer {peerId, initiator}  a new connection (closing any old one)
//   closePeer {peerId}              close it (the participant may stay)
//   restartPeer {peerId}            ICE restart after our socket came back
//   description {peerId, kind, sdp} an offer or answer from them
//   candidate {peerId, message}     a trickled candidate from them
//   sendMediaState                  tell the others our microphone/camera
//   startRecording {restart}        want the recording leg (restart: the server
//                                   has none for us, replace any old one)
//   recordingAnswer {sdp}, recordingFailed (refused: retry later),
//   recordingEnded (the server says our leg ended: reopen unless one is starting)
//   relayOffer {peerId, sdp}        the server's relay of that participant: a new
//                                   receive-only link (closing any old one)
//   holdPeer {peerId}               keep a link to someone absent after a server
//                                   restart for a while (they are likely coming back)
//   recordsEvent {event}, recordsShow {message}   to the records panel
//   finish                          release media and connections: the call is over
//   warn {code}                     log an unexpected error code
export const EFFECTS = Object.freeze([
  "createPeer",
  "closePeer",
  "restartPeer",
  "description",
  "candidate",
  "sendMediaState",
  "startRecording",
  "recordingAnswer",
  "recordingFailed",
  "recordingEnded",
  "relayOffer",
  "holdPeer",
  "recordsEvent",
  "recordsShow",
  "finish",
  "warn",
]);

export function initialState({ consultationState = null, me = {} } = {}) {
  return {
    myId: null,
    config: null,
    me: { display_name: me.display_name || "" },
    consultationState,
    status: "connecting",
    joinedOnce: false,
    finished: null,
    failureKey: "",
    media: {
      audio: false,
      video: false,
      micOn: true,
      camOn: true,
      audioOnly: false,
      problems: [],
    },
    participants: new Map(),
    chat: [],
    nextKey: 1,
    recording: { available: false, allowed: false, maxBitrate: 0, peers: [], leg: "off", was: false },
    // The server relays this call (it records it): our one uplink is the
    // recording leg, and each other participant arrives on a relay link the
    // server offers (relay_offer). Otherwise the call is a browser mesh.
    relay: false,
  };
}

const done = (state, effects = []) => ({ state, effects });

// -- participants ---------------------------------------------------------------

const DEFAULT_INFO = { display_name: "", audio: true, video: true };

// The participant with `info` merged in (added when new, connected by default).
function withParticipant(state, peerId, info = null) {
  const participants = new Map(state.participants);
  const old = participants.get(peerId);
  const participant = old
    ? { ...old, info: info ? { ...old.info, ...info } : old.info }
    : { info: { peer_id: peerId, ...DEFAULT_INFO, ...(info || {}) }, connected: true, linked: false };
  if (info && "connected" in info) participant.connected = info.connected;
  participants.set(peerId, participant);
  return { ...state, participants };
}

function patchParticipant(state, peerId, patch) {
  const old = state.participants.get(peerId);
  if (!old) return state;
  const participants = new Map(state.participants);
  participants.set(peerId, { ...old, ...patch, info: { ...old.info, ...(patch.info || {}) } });
  return { ...state, participants };
}

function withoutParticipant(state, peerId) {
  const participants = new Map(state.participants);
  participants.delete(peerId);
  return { ...state, participants };
}

function link(state, peerId, initiator, effects) {
  if (state.relay) return state; // the server offers a relay link instead
  effects.push({ do: "createPeer", peerId, initiator });
  return patchParticipant(state, peerId, { linked: true });
}

function unlink(state, peerId, effects) {
  effects.push({ do: "closePeer", peerId });
  return patchParticipant(state, peerId, { linked: false });
}

function drop(state, peerId, effects) {
  const p = state.participants.get(peerId);
  if (!p) return state;
  if (p.linked || state.relay) effects.push({ do: "closePeer", peerId });
  return withoutParticipant(state, peerId);
}

// The name shown for a peer id; "" when unknown (and for ourselves without a name).
export function nameOf(state, peerId) {
  if (!peerId) return "";
  if (peerId === state.myId) return state.me.display_name;
  const p = state.participants.get(peerId);
  return p ? p.info.display_name : "";
}

// -- chat -----------------------------------------------------------------------

function isUnstored(line) {
  return line.kind === "chat" && line.eventId === undefined;
}

// The unstored line of `from` with this ref. Our own lines may predate the first
// join, when our id was not known yet.
export function findUnstored(state, from, ref) {
  if (!ref) return null;
  return (
    state.chat.find(
      (l) => isUnstored(l) && l.ref === ref && (l.from === from || (l.mine && from === state.myId)),
    ) || null
  );
}

function addLine(state, line) {
  return { ...state, chat: [...state.chat, { ...line, key: `l${state.nextKey}` }], nextKey: state.nextKey + 1 };
}

function replaceLine(state, target, patch) {
  return { ...state, chat: state.chat.map((l) => (l === target ? { ...l, ...patch } : l)) };
}

// Our own new line: pending until its stored event comes back.
export function chatSent(state, { ref, text, sent }) {
  return addLine(state, { kind: "chat", state: "pending", ref, from: state.myId, text, mine: true, sent });
}

// Our failed line goes out again with its ref.
export function chatRetried(state, ref, sent) {
  const line = state.chat.find((l) => isUnstored(l) && l.mine && l.ref === ref);
  if (!line) return state;
  return replaceLine(state, line, { state: "pending", sent, retryable: false });
}

function markNotStored(state, from, ref) {
  const line = findUnstored(state, from, ref);
  if (!line) return state;
  return replaceLine(state, line, { state: "failed", retryable: line.mine && !state.finished });
}

// A stored timeline event: a line of its own, replacing our or another's
// unstored chat line with the same ref. Returns the state unchanged for kinds
// the call does not show and for events already shown.
export function addEvent(state, event) {
  if (!event || !CHAT_KINDS.has(event.kind)) return state;
  if (state.chat.some((l) => l.eventId === event.id)) return state;
  const mine = Boolean(event.actor_id && event.actor_id === state.myId);
  const data = event.data || {};
  let chat = state.chat;
  if (event.kind === "chat") {
    let line = findUnstored(state, event.actor_id, data.ref);
    if (!line && mine && !data.ref) {
      line = state.chat.find((l) => isUnstored(l) && l.mine && l.text === data.text) || null;
    }
    if (line) chat = chat.filter((l) => l !== line);
  }
  const stored = {
    key: `e${event.id}`,
    kind: event.kind,
    state: "confirmed",
    eventId: event.id,
    at: event.at,
    from: event.actor_id || null,
    actorName: event.actor_name || "",
    mine,
    text: event.kind === "chat" ? data.text : "",
  };
  return { ...state, chat: [...chat, stored] };
}

// The lines in the order shown: stored ones by event id, then the unstored ones
// in the order they came.
export function chatLines(state) {
  const stored = state.chat.filter((l) => !isUnstored(l)).sort((a, b) => a.eventId - b.eventId);
  return [...stored, ...state.chat.filter(isUnstored)];
}

// -- recording --------------------------------------------------------------------

export function legChanged(state, leg) {
  return { ...state, recording: { ...state.recording, leg } };
}

function withRecorded(state, peers) {
  const was = state.recording.was || peers.length > 0;
  return { ...state, recording: { ...state.recording, peers, was } };
}

// What the recording indicator shows: off | not_consented | recording | starting
// | failed | unknown (our socket is down: the server cannot tell us) | ended
// (the call is over and it was recorded); how many others are being recorded;
// and `unrecorded`: the other participants of the live call who are not being
// recorded although the consent covers it (their tiles say so). The server's
// word decides: "recording" only while it lists us as recorded.
export function recordingView(state) {
  const rec = state.recording;
  let view;
  if (!rec.available) view = "off";
  else if (!rec.allowed) view = "not_consented";
  else if (state.status !== "joined") view = "unknown";
  else if (state.myId && rec.peers.includes(state.myId)) view = "recording";
  // Our leg is up but its file could not be written (a full disk): not "starting".
  else if (state.myId && (rec.halted || {})[state.myId]) view = "failed";
  else view = rec.leg === "off" || rec.leg === "recording" ? "starting" : rec.leg;
  let unrecorded = [];
  if (state.finished) {
    view = rec.was ? "ended" : "off";
  } else if (view !== "unknown" && rec.available && rec.allowed && state.consultationState === "live") {
    unrecorded = [...state.participants.entries()]
      .filter(([id, p]) => p.connected && !rec.peers.includes(id))
      .map(([id]) => id);
  }
  const shown = view === "unknown" || view === "ended" || view === "off" ? [] : rec.peers;
  const others = shown.filter((id) => id !== state.myId).length;
  return { state: view, peers: shown.length, others, unrecorded };
}

export function canRecord(state) {
  return !state.finished && state.recording.available && state.recording.allowed;
}

// -- local media ------------------------------------------------------------------

export function mediaOpened(state, { audio, video, problems }) {
  return { ...state, media: { ...state.media, audio, video, problems } };
}

export function micToggled(state) {
  if (!state.media.audio) return state;
  return { ...state, media: { ...state.media, micOn: !state.media.micOn } };
}

export function camToggled(state) {
  if (!state.media.video) return state;
  return { ...state, media: { ...state.media, camOn: !state.media.camOn } };
}

// Audio-only on (the camera released) or off (video: whether a camera came back).
export function audioOnlyChanged(state, { audioOnly, video, problems }) {
  const media = { ...state.media, audioOnly, video };
  if (!audioOnly) media.camOn = true;
  if (problems) media.problems = problems;
  return { ...state, media };
}

// What we send: {audio, video} as the others should show it.
export function mediaState(state) {
  const m = state.media;
  return { audio: m.audio && m.micOn, video: m.video && m.camOn && !m.audioOnly };
}

// -- signaling status, the banner and the end -------------------------------------

export function statusChanged(state, status) {
  return { ...state, status, joinedOnce: state.joinedOnce || status === "joined" };
}

// The call is over for this page (once): every participant goes, media is released.
export function finish(state, kind, failureKey = "") {
  if (state.finished) return done(state);
  // Nobody is recorded in a call that is over for this page.
  const recording = { ...state.recording, peers: [], leg: "off", halted: {} };
  return done({ ...state, finished: kind, failureKey, participants: new Map(), recording }, [
    { do: "finish" },
  ]);
}

// How the page starts: a consultation that is not (or no longer) in a call
// state finishes at once.
export function opened(state) {
  if (CALL_STATES.has(state.consultationState)) return done(state);
  const over = OVER_STATES.has(state.consultationState);
  return finish(state, over ? "ended" : "failed", over ? "" : "call.error.not_joinable");
}

// The banner: {kind: info|warn|error|live, key} (failureKey or a call.state.* key).
export function bannerView(state) {
  if (state.finished === "ended") return { kind: "info", key: "call.state.ended" };
  if (state.finished === "left") return { kind: "info", key: "call.state.left" };
  if (state.finished === "failed") {
    return { kind: "error", key: state.failureKey || "call.state.failed" };
  }
  if (state.status === "offline" || (state.status === "connecting" && state.joinedOnce)) {
    return { kind: "warn", key: "call.state.reconnecting" };
  }
  if (state.status !== "joined") return { kind: "info", key: "call.state.connecting" };
  if (![...state.participants.values()].some((p) => p.connected)) {
    return { kind: "info", key: "call.state.waiting" };
  }
  return { kind: "live", key: "call.state.live" };
}

// The page's data-state: how the call is over, else the consultation's state
// while joined, else the signaling status.
export function pageState(state) {
  return state.finished || (state.status === "joined" ? state.consultationState : state.status);
}

// -- server messages --------------------------------------------------------------

function onJoined(state, msg) {
  const effects = [];
  let s = {
    ...state,
    relay: Boolean((msg.recording || {}).relay),
    myId: msg.peer_id,
    config: {
      iceServers: msg.ice_servers || [],
      iceTransportPolicy: msg.ice_transport_policy || "all",
    },
    consultationState: msg.state,
  };
  for (const event of msg.events || []) s = addEvent(s, event);
  // What is still unconfirmed goes out again right after this (signaling.js).
  s = {
    ...s,
    chat: s.chat.map((l) => (isUnstored(l) && l.mine && l.state === "pending" ? { ...l, sent: true } : l)),
  };
  const peers = msg.peers || [];
  const present = new Set(peers.map((p) => p.peer_id));
  // The server lost our place (it restarted) although we were in the call: the
  // others are coming back too, and the media between us may still flow.
  const restarted = state.myId !== null && !msg.resumed;
  for (const peerId of [...s.participants.keys()]) {
    if (present.has(peerId)) continue;
    const p = s.participants.get(peerId);
    if (restarted && p.linked) {
      // Not back yet: keep the connection for a while rather than cut it.
      s = patchParticipant(s, peerId, { connected: false, held: true });
      effects.push({ do: "holdPeer", peerId });
    } else {
      s = drop(s, peerId, effects); // left while we were away
    }
  }
  for (const info of peers) {
    s = withParticipant(s, info.peer_id, info);
    const p = s.participants.get(info.peer_id);
    if (p.linked && (msg.resumed || restarted)) {
      effects.push({ do: "restartPeer", peerId: info.peer_id }); // the media may still flow
    } else if (info.connected) {
      s = link(s, info.peer_id, true, effects); // we are new here: we offer
    } else if (p.linked) {
      s = unlink(s, info.peer_id, effects);
    }
  }
  effects.push({ do: "sendMediaState" });
  const rec = msg.recording || {};
  s = withRecorded(
    {
      ...s,
      recording: {
        ...s.recording,
        available: Boolean(rec.available),
        allowed: Boolean(rec.allowed),
        maxBitrate: rec.max_bitrate || 0,
      },
    },
    [...(rec.recording || [])],
  );
  // Not listed: the server has no leg for us (first join, a restart, a lapsed
  // place), whatever our old connection looks like from here.
  const restart = !s.recording.peers.includes(s.myId);
  if (canRecord(s)) effects.push({ do: "startRecording", restart });
  return done(s, effects);
}

function onPeerJoined(state, msg) {
  const effects = [];
  const held = state.participants.get(msg.peer.peer_id)?.held;
  let s = withParticipant(state, msg.peer.peer_id, { ...msg.peer, connected: true });
  s = patchParticipant(s, msg.peer.peer_id, { held: false });
  if (s.participants.get(msg.peer.peer_id).linked && !msg.resumed && !held) {
    // A new session of that person (their place had lapsed): they offer anew.
    // One we held across a server restart keeps its connection: they restart
    // ICE on it (or, if it was a new page after all, peer.js replaces it).
    s = unlink(s, msg.peer.peer_id, effects);
  }
  return done(s, effects);
}

// A connection held across a server restart whose person did not come back.
export function releaseHeld(state, peerId) {
  const p = state.participants.get(peerId);
  if (!p || !p.held || p.connected) return done(state);
  const effects = [];
  return done(drop(state, peerId, effects), effects);
}


function onOffer(state, msg) {
  if (state.relay) return done(state); // a relayed call has no browser-to-browser links
  const effects = [];
  let s = state;
  const p = s.participants.get(msg.from);
  if (!p || !p.linked) {
    s = withParticipant(s, msg.from);
    s = link(s, msg.from, false, effects);
  }
  effects.push({ do: "description", peerId: msg.from, kind: "offer", sdp: msg.sdp });
  return done(s, effects);
}

function toLinked(kind) {
  return (state, msg) => {
    const p = state.participants.get(msg.from);
    if (!p || !p.linked) return done(state);
    const effect =
      kind === "answer"
        ? { do: "description", peerId: msg.from, kind: "answer", sdp: msg.sdp }
        : { do: "candidate", peerId: msg.from, message: msg };
    return done(state, [effect]);
  };
}

function onRecording(state, msg) {
  const others = state.recording.peers.filter((id) => id !== msg.peer_id);
  const peers = msg.state === "recording" ? [...others, msg.peer_id] : others;
  // Relayed, a leg whose file could not be written (a full disk) is kept
  // (msg.kept): it still carries that participant's camera, so neither their
  // page nor ours touches it, and the server records it again when it can.
  const kept = Boolean(msg.kept) && msg.state !== "recording" && state.relay;
  // Our leg ended on the server (interrupted, failed, or replaced by the one
  // we are starting): reopen it unless that is under way. A kept leg of a
  // browser mesh only carries the recording: it is closed and reopened as
  // ever, which frees the uplink for the live call meanwhile.
  const mine = msg.peer_id === state.myId && msg.state !== "recording" && canRecord(state) && !kept;
  const effects = mine ? [{ do: "recordingEnded" }] : [];
  // Relayed: someone else's leg ended, and the relay link it fed with it (a
  // new leg of theirs comes with a new relay_offer).
  if (state.relay && !kept && !mine && msg.peer_id !== state.myId && msg.state !== "recording") {
    effects.push({ do: "closePeer", peerId: msg.peer_id });
  }
  // Why a participant is not being recorded, while the server says so.
  const halted = { ...(state.recording.halted || {}) };
  delete halted[msg.peer_id];
  if (msg.state !== "recording" && msg.reason) halted[msg.peer_id] = msg.reason;
  const s = { ...state, recording: { ...state.recording, halted } };
  return done(withRecorded(s, peers), effects);
}

// Why we are not being recorded (the server's reason: "disk_full",
// "write_failed"), or null; the indicator says it.
export function recordingReason(state) {
  if (recordingView(state).state !== "failed") return null;
  return (state.recording.halted || {})[state.myId] || null;
}

function onState(state, msg) {
  const s = { ...state, consultationState: msg.state };
  return CALL_STATES.has(msg.state) ? done(s) : finish(s, "ended");
}

function onError(state, msg) {
  if (msg.code === "chat_not_stored") return done(markNotStored(state, state.myId, msg.ref));
  if (REC_ERRORS.has(msg.code)) return done(state, [{ do: "recordingFailed" }]);
  // not_participant while in the call: the server took us off it (a reassignment);
  // nothing is relayed to us any more, so the call is over for this page.
  const removed = msg.code === "not_participant";
  if (FATAL_CODES.has(msg.code) && (state.status !== "joined" || removed)) {
    const key = msg.code === "unauthenticated" ? "call.error.session" : `call.error.${msg.code}`;
    return finish(state, "failed", key);
  }
  // unknown_peer: a message raced a peer's disconnect; the resume fixes it.
  if (msg.code === "unknown_peer") return done(state);
  return done(state, [{ do: "warn", code: msg.code }]);
}

// Every server message the call page receives, by type (hello and pong are
// the socket's: socket.js, signaling.js). Each takes (state, message) and
// returns {state, effects}.
export const HANDLERS = Object.freeze({
  joined: onJoined,
  peer_joined: onPeerJoined,
  peer_left: (state, msg) => {
    const effects = [];
    return done(drop(state, msg.peer_id, effects), effects);
  },
  peer_state: (state, msg) => done(patchParticipant(state, msg.peer_id, { connected: msg.connected })),
  offer: onOffer,
  answer: toLinked("answer"),
  candidate: toLinked("candidate"),
  media_state: (state, msg) =>
    done(patchParticipant(state, msg.from, { info: { audio: msg.audio, video: msg.video } })),
  chat: (state, msg) => {
    if (findUnstored(state, msg.from, msg.ref)) return done(state);
    return done(
      addLine(state, { kind: "chat", state: "pending", ref: msg.ref, from: msg.from, text: msg.text, mine: false }),
    );
  },
  chat_failed: (state, msg) => done(markNotStored(state, msg.from, msg.ref)),
  event: (state, msg) => done(addEvent(state, msg.event), [{ do: "recordsEvent", event: msg.event }]),
  doc_show: (state, msg) => done(state, [{ do: "recordsShow", message: msg }]),
  rec_answer: (state, msg) => done(state, [{ do: "recordingAnswer", sdp: msg.sdp }]),
  relay_offer: (state, msg) =>
    done(withParticipant(state, msg.source), [{ do: "relayOffer", peerId: msg.source, sdp: msg.sdp }]),
  recording: onRecording,
  state: onState,
  error: onError,
  // The dashboards' push on the same socket: nothing to do on the call page.
  "consultation.changed": (state) => done(state),
  "consultation.overdue": (state) => done(state),
});

// Apply one server message; unknown types leave the state as it is.
export function receive(state, msg) {
  const handler = Object.prototype.hasOwnProperty.call(HANDLERS, msg.type) ? HANDLERS[msg.type] : null;
  return handler ? handler(state, msg) : done(state);
}
