// The call page's pure state (web/static/js/call-state.js), without a DOM:
// server messages in, state and effects out.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  EFFECTS,
  HANDLERS,
  addEvent,
  bannerView,
  chatLines,
  chatRetried,
  chatSent,
  finish,
  initialState,
  legChanged,
  mediaOpened,
  mediaState,
  micToggled,
  opened,
  receive,
  recordingReason,
  recordingView,
  releaseHeld,
  statusChanged,
} from "../../web/static/js/call-state.js";

const ME = "p-me";
const ANN = { peer_id: "p-ann", display_name: "Ann", role: "clinic", audio: true, video: true, connected: true };
const BOB = { peer_id: "p-bob", display_name: "Bob", role: "specialist", audio: true, video: true, connected: true };

function joined(extra = {}) {
  return {
    type: "joined",
    peer_id: ME,
    resumed: false,
    peers: [ANN],
    ice_servers: [{ urls: "stun:stun.example" }],
    ice_transport_policy: "all",
    state: "accepted",
    recording: { available: true, allowed: true, max_bitrate: 300000, recording: [] },
    events: [],
    ...extra,
  };
}

// A state after joining a call where Ann is already present.
function inCall(extra = {}) {
  let state = initialState({ consultationState: "accepted", me: { display_name: "Me" } });
  state = statusChanged(state, "joined");
  return receive(state, joined(extra)).state;
}

function chatEvent(id, actor, text, ref) {
  return { id, kind: "chat", actor_id: actor, actor_name: "", at: "2024-05-01T08:00:00Z", data: { text, ref } };
}

const does = (effects) => effects.map((e) => e.do);

test("every effect a handler can ask for is a known one", () => {
  const { effects } = receive(initialState(), joined({ peers: [ANN, { ...BOB, connected: false }] }));
  for (const name of does(effects)) assert.ok(EFFECTS.includes(name), name);
});

test("the handler table is a plain object keyed by server message type", () => {
  assert.deepEqual(Object.keys(HANDLERS).sort(), [
    "answer",
    "candidate",
    "chat",
    "chat_failed",
    "consultation.changed",
    "consultation.overdue",
    "doc_show",
    "error",
    "event",
    "joined",
    "media_state",
    "offer",
    "peer_joined",
    "peer_left",
    "peer_state",
    "rec_answer",
    "recording",
    "relay_offer",
    "state",
  ]);
  for (const handler of Object.values(HANDLERS)) assert.equal(typeof handler, "function");
  const before = initialState();
  assert.equal(receive(before, { type: "no_such_type" }).state, before);
});

test("joining offers to everyone present, sends our media state and starts recording", () => {
  const state0 = statusChanged(initialState({ consultationState: "accepted" }), "joined");
  const { state, effects } = receive(state0, joined({ peers: [ANN, { ...BOB, connected: false }] }));
  assert.equal(state.myId, ME);
  assert.deepEqual(state.config, { iceServers: [{ urls: "stun:stun.example" }], iceTransportPolicy: "all" });
  assert.deepEqual([...state.participants.keys()], ["p-ann", "p-bob"]);
  assert.equal(state.participants.get("p-ann").linked, true);
  assert.equal(state.participants.get("p-bob").linked, false);
  assert.equal(state.participants.get("p-bob").connected, false);
  assert.deepEqual(effects, [
    { do: "createPeer", peerId: "p-ann", initiator: true },
    { do: "sendMediaState" },
    { do: "startRecording", restart: true },
  ]);
  assert.equal(state0.participants.size, 0, "the old state is not changed");
  assert.deepEqual(bannerView(state), { kind: "live", key: "call.state.live" });
});

test("a resumed join restarts ICE and drops who left while we were away", () => {
  let state = receive(inCall(), { type: "peer_joined", peer: BOB, resumed: false }).state;
  state = receive(state, { type: "offer", from: "p-bob", sdp: "v=0" }).state;
  const { state: after, effects } = receive(state, joined({ resumed: true, peers: [ANN] }));
  assert.deepEqual([...after.participants.keys()], ["p-ann"]);
  assert.deepEqual(does(effects).slice(0, 2), ["closePeer", "restartPeer"]);
  assert.equal(effects[0].peerId, "p-bob");
  assert.equal(effects[1].peerId, "p-ann");
});

test("participants join, change media, lose their connection and leave", () => {
  let state = inCall();
  let result = receive(state, { type: "peer_joined", peer: BOB, resumed: false });
  state = result.state;
  assert.deepEqual(result.effects, [], "the newcomer offers, not us");
  assert.equal(state.participants.get("p-bob").info.display_name, "Bob");

  // Bob's offer links us to him: we answer (not initiator).
  result = receive(state, { type: "offer", from: "p-bob", sdp: "v=0 offer" });
  state = result.state;
  assert.deepEqual(result.effects, [
    { do: "createPeer", peerId: "p-bob", initiator: false },
    { do: "description", peerId: "p-bob", kind: "offer", sdp: "v=0 offer" },
  ]);
  assert.equal(state.participants.get("p-bob").linked, true);

  const candidate = { type: "candidate", from: "p-bob", candidate: "candidate:1", sdp_mid: "0" };
  assert.deepEqual(does(receive(state, candidate).effects), ["candidate"]);
  // Candidates of someone we have no connection to are dropped.
  assert.deepEqual(receive(state, { ...candidate, from: "p-nobody" }).effects, []);

  state = receive(state, { type: "media_state", from: "p-bob", audio: false, video: true }).state;
  assert.equal(state.participants.get("p-bob").info.audio, false);
  assert.equal(state.participants.get("p-bob").info.display_name, "Bob");

  state = receive(state, { type: "peer_state", peer_id: "p-bob", connected: false }).state;
  assert.equal(state.participants.get("p-bob").connected, false);

  // A new session of Bob (his place had lapsed): the old connection goes, he offers anew.
  result = receive(state, { type: "peer_joined", peer: BOB, resumed: false });
  assert.deepEqual(result.effects, [{ do: "closePeer", peerId: "p-bob" }]);
  assert.equal(result.state.participants.get("p-bob").connected, true);
  assert.equal(result.state.participants.get("p-bob").linked, false);

  result = receive(state, { type: "peer_left", peer_id: "p-bob" });
  assert.deepEqual(result.effects, [{ do: "closePeer", peerId: "p-bob" }]);
  assert.deepEqual([...result.state.participants.keys()], ["p-ann"]);
  result = receive(result.state, { type: "peer_left", peer_id: "p-ann" });
  assert.equal(result.state.participants.size, 0);
  assert.deepEqual(bannerView(result.state), { kind: "info", key: "call.state.waiting" });
});

test("our chat line is pending until the stored event with its ref confirms it", () => {
  let state = initialState({ consultationState: "accepted" });
  // Written before the first join: not sent yet, our id not known yet.
  state = chatSent(state, { ref: "r1", text: "BP 150/95", sent: false });
  let [line] = chatLines(state);
  assert.equal(line.state, "pending");
  assert.equal(line.sent, false);
  assert.equal(line.mine, true);

  state = statusChanged(state, "joined");
  state = receive(state, joined()).state;
  [line] = chatLines(state);
  assert.equal(line.sent, true, "it goes out again right after the join");

  // Another's stored line with the same ref does not confirm ours.
  state = receive(state, { type: "event", event: chatEvent(7, "p-ann", "hello", "r1") }).state;
  assert.deepEqual(
    chatLines(state).map((l) => [l.state, l.text]),
    [
      ["confirmed", "hello"],
      ["pending", "BP 150/95"],
    ],
  );
  const { state: confirmed, effects } = receive(state, {
    type: "event",
    event: chatEvent(8, ME, "BP 150/95", "r1"),
  });
  assert.deepEqual(effects, [{ do: "recordsEvent", event: chatEvent(8, ME, "BP 150/95", "r1") }]);
  assert.deepEqual(
    chatLines(confirmed).map((l) => [l.state, l.eventId, l.mine]),
    [
      ["confirmed", 7, false],
      ["confirmed", 8, true],
    ],
  );
  // The same event again (replayed after a reconnect) is shown once.
  const again = receive(confirmed, { type: "event", event: chatEvent(8, ME, "BP 150/95", "r1") }).state;
  assert.equal(chatLines(again).length, 2);
});

test("stored lines are ordered by event id, unstored ones after them", () => {
  let state = inCall();
  state = chatSent(state, { ref: "mine", text: "mine", sent: true });
  state = receive(state, { type: "chat", from: "p-ann", ref: "a1", text: "relayed" }).state;
  state = receive(state, { type: "event", event: chatEvent(12, "p-ann", "later", "x") }).state;
  state = receive(state, { type: "event", event: { id: 10, kind: "joined", actor_id: "p-ann", at: "" } }).state;
  // Kinds the call does not show are not lines.
  state = receive(state, { type: "event", event: { id: 11, kind: "document_shared", actor_id: ME, at: "" } })
    .state;
  assert.deepEqual(
    chatLines(state).map((l) => l.eventId ?? l.text),
    [10, 12, "mine", "relayed"],
  );
  // A relayed line already shown is not added twice; its stored event replaces it.
  assert.equal(chatLines(receive(state, { type: "chat", from: "p-ann", ref: "a1", text: "relayed" }).state).length, 4);
  state = addEvent(state, chatEvent(13, "p-ann", "relayed", "a1"));
  assert.deepEqual(
    chatLines(state).map((l) => l.eventId ?? l.text),
    [10, 12, 13, "mine"],
  );
});

test("a line the server could not store is marked failed, and ours can be sent again", () => {
  let state = inCall();
  state = chatSent(state, { ref: "r9", text: "SpO2 91%", sent: true });
  state = receive(state, { type: "chat", from: "p-ann", ref: "a9", text: "theirs" }).state;

  state = receive(state, { type: "error", code: "chat_not_stored", ref: "r9" }).state;
  state = receive(state, { type: "chat_failed", from: "p-ann", ref: "a9" }).state;
  const [mine, theirs] = chatLines(state);
  assert.equal(mine.state, "failed");
  assert.equal(mine.retryable, true);
  assert.equal(theirs.state, "failed");
  assert.equal(theirs.retryable, false, "only its author may send a line again");

  state = chatRetried(state, "r9", true);
  assert.equal(chatLines(state)[0].state, "pending");
  assert.equal(chatLines(state)[0].sent, true);
  state = receive(state, { type: "event", event: chatEvent(20, ME, "SpO2 91%", "r9") }).state;
  assert.deepEqual(
    chatLines(state).map((l) => [l.state, l.text]),
    [
      ["confirmed", "SpO2 91%"],
      ["failed", "theirs"],
    ],
  );
});

test("recording: who is recorded, our leg, refusal and failure", () => {
  let state = inCall();
  assert.deepEqual(recordingView(state), { state: "starting", peers: 0, others: 0, unrecorded: [] });
  state = legChanged(state, "starting");
  state = receive(state, { type: "recording", peer_id: ME, state: "recording" }).state;
  state = receive(state, { type: "recording", peer_id: "p-ann", state: "recording" }).state;
  assert.deepEqual(recordingView(state), { state: "recording", peers: 2, others: 1, unrecorded: [] });
  // Recorded twice is still one peer.
  state = receive(state, { type: "recording", peer_id: "p-ann", state: "recording" }).state;
  assert.deepEqual(state.recording.peers, [ME, "p-ann"]);

  const failed = receive(state, { type: "recording", peer_id: ME, state: "failed" });
  assert.deepEqual(failed.effects, [{ do: "recordingEnded" }]);
  assert.deepEqual(failed.state.recording.peers, ["p-ann"]);
  assert.deepEqual(receive(state, { type: "recording", peer_id: "p-ann", state: "stopped" }).effects, []);
  assert.deepEqual(receive(state, { type: "error", code: "recording_failed" }).effects, [
    { do: "recordingFailed" },
  ]);
  assert.deepEqual(receive(state, { type: "rec_answer", sdp: "v=0" }).effects, [
    { do: "recordingAnswer", sdp: "v=0" },
  ]);

  const refused = inCall({ recording: { available: true, allowed: false, recording: [] } });
  assert.equal(recordingView(refused).state, "not_consented");
  const { effects } = receive(statusChanged(initialState(), "joined"), joined({ recording: { available: false } }));
  assert.ok(!does(effects).includes("startRecording"));
});

test("the consultation ending finishes the call once and releases everything", () => {
  const state = inCall();
  const { state: ended, effects } = receive(state, { type: "state", state: "ended", by: "p-ann" });
  assert.equal(ended.finished, "ended");
  assert.equal(ended.participants.size, 0);
  assert.deepEqual(effects, [{ do: "finish" }]);
  assert.deepEqual(bannerView(ended), { kind: "info", key: "call.state.ended" });
  assert.equal(recordingView(ended).state, "off");
  assert.deepEqual(finish(ended, "left").effects, [], "finished once");
  // A recorded call that ended says so, and nobody is "being recorded" any more.
  let recorded = receive(state, { type: "recording", peer_id: ME, state: "recording" }).state;
  recorded = receive(recorded, { type: "recording", peer_id: "p-ann", state: "recording" }).state;
  const over = receive(recorded, { type: "state", state: "ended", by: "p-ann" }).state;
  assert.deepEqual(recordingView(over), { state: "ended", peers: 0, others: 0, unrecorded: [] });
  // live is still a call.
  const live = receive(state, { type: "state", state: "live" });
  assert.equal(live.state.consultationState, "live");
  assert.equal(live.state.finished, null);
});

test("a join refused for good fails the call; other errors do not", () => {
  let state = statusChanged(initialState({ consultationState: "accepted" }), "closed");
  const refused = receive(state, { type: "error", code: "call_full" });
  assert.equal(refused.state.finished, "failed");
  assert.deepEqual(bannerView(refused.state), { kind: "error", key: "call.error.call_full" });
  assert.equal(
    receive(state, { type: "error", code: "unauthenticated" }).state.failureKey,
    "call.error.session",
  );
  state = inCall();
  assert.equal(receive(state, { type: "error", code: "call_full" }).state.finished, null);
  assert.deepEqual(receive(state, { type: "error", code: "unknown_peer" }).effects, []);
  assert.deepEqual(receive(state, { type: "error", code: "rate_limited" }).effects, [
    { do: "warn", code: "rate_limited" },
  ]);
});

test("taken off the call by the server (a reassignment), the page finishes and releases all", () => {
  const { state, effects } = receive(inCall(), { type: "error", code: "not_participant" });
  assert.equal(state.finished, "failed");
  assert.equal(state.participants.size, 0);
  assert.deepEqual(effects, [{ do: "finish" }]);
  assert.deepEqual(bannerView(state), { kind: "error", key: "call.error.not_participant" });
});

test("a page opened for a consultation that is not in a call finishes at once", () => {
  assert.equal(opened(initialState({ consultationState: "signed" })).state.finished, "ended");
  const declined = opened(initialState({ consultationState: "declined" })).state;
  assert.equal(declined.finished, "failed");
  assert.equal(declined.failureKey, "call.error.not_joinable");
  assert.equal(opened(initialState({ consultationState: "live" })).state.finished, null);
});

test("the banner says reconnecting once we have been in the call", () => {
  let state = initialState({ consultationState: "accepted" });
  assert.equal(bannerView(state).key, "call.state.connecting");
  state = statusChanged(state, "joined");
  state = statusChanged(state, "connecting");
  assert.deepEqual(bannerView(state), { kind: "warn", key: "call.state.reconnecting" });
});

test("what we send follows the microphone, the camera and audio-only", () => {
  let state = mediaOpened(initialState(), { audio: true, video: false, problems: ["camera_denied"] });
  assert.deepEqual(mediaState(state), { audio: true, video: false });
  state = micToggled(state);
  assert.deepEqual(mediaState(state), { audio: false, video: false });
  assert.deepEqual(state.media.problems, ["camera_denied"]);
});

test("the server's word on recording: our leg is reopened, the unrecorded are named", () => {
  let state = inCall({ state: "live" });
  state = receive(state, { type: "recording", peer_id: ME, state: "recording" }).state;
  // Ann is in the live call and not recorded: every page shows it.
  assert.deepEqual(recordingView(state).unrecorded, ["p-ann"]);
  state = receive(state, { type: "recording", peer_id: "p-ann", state: "recording" }).state;
  assert.deepEqual(recordingView(state).unrecorded, []);
  // Our leg was interrupted on the server: we are no longer shown as recorded
  // and the leg is reopened.
  const cut = receive(state, { type: "recording", peer_id: ME, state: "interrupted" });
  assert.deepEqual(cut.effects, [{ do: "recordingEnded" }]);
  assert.equal(recordingView(legChanged(cut.state, "failed")).state, "failed");
  // Our socket is down: the page cannot know, and does not say "recording".
  assert.equal(recordingView(statusChanged(state, "offline")).state, "unknown");
  // A refused offer is an error state (and a retry), never "starting" for good.
  assert.deepEqual(receive(state, { type: "error", code: "already_recording" }).effects, [
    { do: "recordingFailed" },
  ]);
  // Back after a server restart, not listed as recorded: the leg is replaced.
  const back = receive(statusChanged(state, "joined"), joined({ state: "live", peers: [ANN] }));
  assert.deepEqual(back.effects.at(-1), { do: "startRecording", restart: true });
  const listed = receive(state, joined({ state: "live", resumed: true, recording: { available: true, allowed: true, recording: [ME] } }));
  assert.deepEqual(listed.effects.at(-1), { do: "startRecording", restart: false });
});

test("after a server restart a linked peer not back yet is held, one back is restarted", () => {
  let state = receive(inCall({ peers: [ANN, BOB] }), { type: "state", state: "live" }).state;
  // The server restarted: we are back first, nobody else is there yet.
  const first = receive(state, joined({ peers: [], state: "live" }));
  assert.deepEqual(does(first.effects).filter((d) => d !== "sendMediaState" && d !== "startRecording"), [
    "holdPeer",
    "holdPeer",
  ]);
  assert.equal(first.state.participants.get("p-ann").linked, true);
  assert.equal(first.state.participants.get("p-ann").connected, false);
  // Ann comes back (a new place on the restarted server): the link is kept.
  const annBack = receive(first.state, { type: "peer_joined", peer: ANN, resumed: false });
  assert.deepEqual(annBack.effects, []);
  assert.equal(annBack.state.participants.get("p-ann").linked, true);
  // Bob never does: released after the hold.
  const { state: released, effects } = releaseHeld(annBack.state, "p-bob");
  assert.deepEqual(effects, [{ do: "closePeer", peerId: "p-bob" }]);
  assert.ok(!released.participants.has("p-bob"));
  // Back second, with Ann already there: ICE restarts on the kept connection.
  state = receive(state, joined({ peers: [ANN], state: "live" }));
  assert.deepEqual(does(state.effects).slice(0, 2), ["holdPeer", "restartPeer"]);
});

test("relayed call: no browser links; the server's relay offers make the links", () => {
  const relayed = { recording: { available: true, allowed: true, max_bitrate: 1500000, recording: [], relay: true } };
  let state = initialState({ consultationState: "accepted", me: { display_name: "Me" } });
  state = statusChanged(state, "joined");
  let r = receive(state, joined(relayed));
  assert.equal(r.state.relay, true);
  // We send once, on our recording leg, and offer to nobody.
  assert.deepEqual(does(r.effects), ["sendMediaState", "startRecording"]);
  state = r.state;
  // Bob comes: nothing to do until the server relays him.
  r = receive(state, { type: "peer_joined", peer: BOB, resumed: false });
  assert.deepEqual(r.effects, []);
  state = r.state;
  // A stray browser offer is not answered in a relayed call.
  assert.deepEqual(receive(state, { type: "offer", from: BOB.peer_id, sdp: "v=0" }).effects, []);
  r = receive(state, { type: "relay_offer", source: BOB.peer_id, sdp: "v=0 relay" });
  assert.deepEqual(r.effects, [{ do: "relayOffer", peerId: BOB.peer_id, sdp: "v=0 relay" }]);
  state = r.state;
  // His leg ends (the relay with it): his link closes, he stays in the call.
  r = receive(state, { type: "recording", peer_id: BOB.peer_id, state: "interrupted" });
  assert.deepEqual(r.effects, [{ do: "closePeer", peerId: BOB.peer_id }]);
  assert.ok(r.state.participants.has(BOB.peer_id));
  // Our own leg ending reopens it and closes no link.
  r = receive(state, { type: "recording", peer_id: ME, state: "interrupted" });
  assert.deepEqual(does(r.effects), ["recordingEnded"]);
  // He leaves: his link closes.
  r = receive(state, { type: "peer_left", peer_id: BOB.peer_id });
  assert.deepEqual(r.effects, [{ do: "closePeer", peerId: BOB.peer_id }]);
});

test("relayed call, full recording disk: the legs and links stay, the page says why", () => {
  const relayed = { recording: { available: true, allowed: true, max_bitrate: 1500000, recording: [], relay: true } };
  let state = statusChanged(initialState({ consultationState: "live", me: { display_name: "Me" } }), "joined");
  state = receive(state, joined({ ...relayed, state: "live", peers: [ANN, BOB] })).state;
  state = receive(state, { type: "relay_offer", source: BOB.peer_id, sdp: "v=0 relay" }).state;
  state = legChanged(state, "recording");
  for (const id of [ME, BOB.peer_id]) state = receive(state, { type: "recording", peer_id: id, state: "recording" }).state;
  assert.equal(recordingView(state).state, "recording");
  // Bob's file cannot be written; his leg still carries him: his link stays.
  let r = receive(state, { type: "recording", peer_id: BOB.peer_id, state: "failed", kept: true, reason: "disk_full" });
  assert.deepEqual(r.effects, []);
  assert.ok(recordingView(r.state).unrecorded.includes(BOB.peer_id));
  // Ours too: our leg is not reopened (it is our uplink), and the indicator
  // says recording stopped, and why, rather than "starting".
  r = receive(r.state, { type: "recording", peer_id: ME, state: "interrupted", kept: true, reason: "disk_full" });
  assert.deepEqual(r.effects, []);
  assert.equal(recordingView(r.state).state, "failed");
  assert.equal(recordingReason(r.state), "disk_full");
  // Room again: the server records the same legs again.
  r = receive(r.state, { type: "recording", peer_id: ME, state: "recording" });
  assert.equal(recordingView(r.state).state, "recording");
  assert.equal(recordingReason(r.state), null);
  // Without `kept` a leg that ended is reopened as ever.
  assert.deepEqual(does(receive(r.state, { type: "recording", peer_id: ME, state: "failed" }).effects), [
    "recordingEnded",
  ]);
});

test("mesh call, full recording disk: the leg (only a recording) is closed and reopened", () => {
  let state = inCall({ state: "live" });
  state = receive(state, { type: "recording", peer_id: ME, state: "recording" }).state;
  const r = receive(state, { type: "recording", peer_id: ME, state: "failed", kept: true, reason: "disk_full" });
  assert.deepEqual(r.effects, [{ do: "recordingEnded" }]);
  assert.equal(recordingReason(legChanged(r.state, "failed")), "disk_full");
});

test("mesh call (not relayed): the newcomer offers to everyone present", () => {
  const r = receive(statusChanged(initialState(), "joined"), joined());
  assert.equal(r.state.relay, false);
  assert.ok(r.effects.some((e) => e.do === "createPeer" && e.peerId === ANN.peer_id && e.initiator));
});
