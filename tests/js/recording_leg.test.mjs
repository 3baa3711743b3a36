// The recording leg (web/static/js/recording.js) with a fake connection: its
// senders start with their cap and priority, so that nothing changes their
// parameters once the call is up. A change then (setParameters after the
// answer, or the uplink controller's first priority) came right after the
// encoder's first keyframe on a fast link, and 1-2 camera frames at the start
// of the leg were never encoded (README, "The leg's start"). And the camera
// comes to its sender once the connection is up: a camera frame that came
// before the transport's first estimate started Chromium's VP8 encoder at
// 300 kbit/s, and libvpx then dropped frames when the target rose.

import assert from "node:assert/strict";
import { test } from "node:test";

import { RecordingLeg } from "../../web/static/js/recording.js";
import { planSender } from "../../web/static/js/uplink-policy.js";

class FakeSender {
  constructor(track, encodings) {
    this.track = track;
    this.replaced = [];
    this.params = { transactionId: "t0", encodings: structuredClone(encodings || [{}]) };
    this.sets = 0;
  }

  getParameters() {
    return structuredClone(this.params);
  }

  async replaceTrack(track) {
    this.replaced.push(track);
    this.track = track;
  }

  async setParameters(params) {
    this.sets += 1;
    this.params = structuredClone(params);
  }
}

class FakeConnection {
  constructor() {
    this.senders = [];
    this.inits = [];
    this.connectionState = "new";
    this.iceGatheringState = "complete";
    this.localDescription = null;
    this.remoteDescription = null;
    this.listeners = [];
    this.kinds = [];
    // [camera frames, frames encoded] each getStats() reads (the last stays).
    this.counts = [[0, 0]];
    this.reads = 0;
  }

  async getStats() {
    this.reads += 1;
    const [frames, framesEncoded] = this.counts.length > 1 ? this.counts.shift() : this.counts[0];
    return new Map([
      ["source", { type: "media-source", kind: "video", frames }],
      ["out", { type: "outbound-rtp", kind: "video", framesEncoded }],
    ]);
  }

  // A track, or a kind ("video") for a sender without one yet.
  addTransceiver(trackOrKind, init) {
    this.inits.push(structuredClone(init));
    const track = typeof trackOrKind === "string" ? null : trackOrKind;
    this.kinds.push(track ? track.kind : trackOrKind);
    const sender = new FakeSender(track, init.sendEncodings);
    this.senders.push(sender);
    return { sender };
  }

  // The connection comes up (or goes), as the browser says so.
  connect(state = "connected") {
    this.connectionState = state;
    for (const [type, listener] of this.listeners) if (type === "connectionstatechange") listener();
  }

  getSenders() {
    return this.senders;
  }

  addEventListener(type, listener) {
    this.listeners.push([type, listener]);
  }

  async createOffer() {
    return { type: "offer", sdp: "v=0\r\n" };
  }

  async setLocalDescription(description) {
    this.localDescription = description;
  }

  async setRemoteDescription(description) {
    this.remoteDescription = description;
  }

  close() {
    this.connectionState = "closed";
  }
}

// A leg wanted with these tracks, its offer sent: [leg, its connection, what it sent].
async function offered(tracks) {
  const made = [];
  globalThis.RTCPeerConnection = class extends FakeConnection {
    constructor() {
      super();
      made.push(this);
    }
  };
  const sent = [];
  let done;
  const offer = new Promise((resolve) => {
    done = resolve;
  });
  const signaling = {
    send: (msg) => {
      sent.push(msg);
      done();
      return true;
    },
  };
  const leg = new RecordingLeg({ signaling, onChange: () => {} });
  leg.want({ config: {}, tracks, maxBitrate: 1500000 });
  await offer;
  return [leg, made[0], sent];
}

const audio = { kind: "audio" };
const video = { kind: "video", getSettings: () => ({ width: 640, height: 480 }) };

test("the leg's senders start with their cap and priority, and the answer changes nothing", async () => {
  const [leg, pc, sent] = await offered([audio, video]);
  assert.equal(sent[0].type, "rec_offer");
  await leg.answer("v=0\r\n");
  assert.equal(pc.remoteDescription.type, "answer");
  assert.deepEqual(
    pc.inits.map((init) => [init.direction, init.sendEncodings]),
    [
      ["sendonly", [{ priority: "high", networkPriority: "high" }]],
      ["sendonly", [{ priority: "low", networkPriority: "low", maxBitrate: 1500000 }]],
    ],
  );
  pc.connect();
  assert.deepEqual(
    pc.senders.map((s) => s.sets),
    [0, 0],
  );
  // Nor does the uplink controller have anything to change in video mode.
  for (const sender of pc.senders) {
    const plan = planSender(sender.track.kind, sender.getParameters(), "video", {}, { width: 640, height: 480 });
    assert.equal(plan.changed, false, sender.track.kind);
  }
  leg.stop();
  pc.connect("closed"); // the server closes it: the page lets go of it
  delete globalThis.RTCPeerConnection;
});

test("the camera comes to the leg's video sender once the connection is up", async () => {
  const [leg, pc] = await offered([audio, video]);
  assert.deepEqual(pc.kinds, ["audio", "video"]);
  const [voice, camera] = pc.senders;
  assert.equal(voice.track, audio); // the microphone from the start
  assert.equal(camera.track, null);
  await leg.answer("v=0\r\n");
  assert.equal(camera.track, null, "not before the connection is up");
  pc.connect();
  assert.deepEqual(camera.replaced, [video]);
  // Up again after a drop: the camera it has stays.
  pc.connect();
  assert.deepEqual(camera.replaced, [video]);
  leg.stop();
  pc.connect("closed"); // the server closes it: the page lets go of it
  delete globalThis.RTCPeerConnection;
});

test("a camera switched before the leg is up is the one attached", async () => {
  const [leg, pc] = await offered([audio, video]);
  const other = { kind: "video", getSettings: () => ({ width: 1280, height: 720 }) };
  await leg.replace("video", other);
  const camera = pc.senders[1];
  assert.deepEqual(camera.replaced, [], "nothing attached before the connection is up");
  pc.connect();
  assert.deepEqual(camera.replaced, [other]);
  // Audio-only mode once up: the camera goes at once.
  await leg.replace("video", null);
  assert.deepEqual(camera.replaced, [other, null]);
  leg.stop();
  pc.connect("closed"); // the server closes it: the page lets go of it
  delete globalThis.RTCPeerConnection;
});

test("ending from this page: it waits until the camera's frames until then are encoded, and keeps the camera", async () => {
  const [leg, pc] = await offered([audio, video]);
  await leg.answer("v=0\r\n");
  pc.connect();
  const [voice, camera] = pc.senders;
  // The camera is 3 frames ahead of the encoder; then the encoder catches up,
  // and 2 frames the camera gave after are encoded too (FLUSH_AFTER).
  pc.counts = [
    [100, 97],
    [101, 99],
    [102, 100],
    [103, 101],
    [104, 102],
    [104, 102],
  ];
  await leg.flush();
  assert.equal(pc.reads, 5, "read until 97 + 3 + 2 frames were encoded");
  assert.equal(voice.track, audio);
  assert.equal(camera.track, video);
  leg.stop();
  pc.connect("closed");
  delete globalThis.RTCPeerConnection;
});

test("a leg whose encoder lags far behind is waited for a second at most; one not up, not at all", async () => {
  const [leg, pc] = await offered([audio, video]);
  await leg.flush(); // not connected: nothing to wait for
  assert.equal(pc.reads, 0);
  await leg.answer("v=0\r\n");
  pc.connect();
  // An encoder that encodes nothing more (stills, or a stuck one).
  pc.counts = [[500, 100]];
  const started = performance.now();
  await leg.flush();
  assert.ok(performance.now() - started >= 1000);
  leg.stop();
  pc.connect("closed");
  delete globalThis.RTCPeerConnection;
});
