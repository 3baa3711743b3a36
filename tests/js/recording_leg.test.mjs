// The recording leg (web/static/js/recording.js) with a fake connection: its
// senders start with their cap and priority, so that nothing changes their
// parameters once the call is up. A change then (setParameters after the
// answer, or the uplink controller's first priority) came right after the
// encoder's first keyframe on a fast link, and 1-2 camera frames at the start
// of the leg were never encoded (README, "The leg's start").

import assert from "node:assert/strict";
import { test } from "node:test";

import { RecordingLeg } from "../../web/static/js/recording.js";
import { planSender } from "../../web/static/js/uplink-policy.js";

class FakeSender {
  constructor(track, encodings) {
    this.track = track;
    this.params = { transactionId: "t0", encodings: structuredClone(encodings || [{}]) };
    this.sets = 0;
  }

  getParameters() {
    return structuredClone(this.params);
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
  }

  addTransceiver(track, init) {
    this.inits.push(structuredClone(init));
    const sender = new FakeSender(track, init.sendEncodings);
    this.senders.push(sender);
    return { sender };
  }

  getSenders() {
    return this.senders;
  }

  addEventListener() {}

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

test("the leg's senders start with their cap and priority, and the answer changes nothing", async () => {
  const made = [];
  globalThis.RTCPeerConnection = class extends FakeConnection {
    constructor() {
      super();
      made.push(this);
    }
  };
  const sent = [];
  let offered;
  const offer = new Promise((resolve) => {
    offered = resolve;
  });
  const signaling = {
    send: (msg) => {
      sent.push(msg);
      offered();
      return true;
    },
  };
  const leg = new RecordingLeg({ signaling, onChange: () => {} });
  const audio = { kind: "audio" };
  const video = { kind: "video", getSettings: () => ({ width: 640, height: 480 }) };
  leg.want({ config: {}, tracks: [audio, video], maxBitrate: 1500000 });
  await offer;
  assert.equal(sent[0].type, "rec_offer");

  const [pc] = made;
  await leg.answer("v=0\r\n");
  assert.equal(pc.remoteDescription.type, "answer");
  assert.deepEqual(
    pc.inits.map((init) => [init.direction, init.sendEncodings]),
    [
      ["sendonly", [{ priority: "high", networkPriority: "high" }]],
      ["sendonly", [{ priority: "low", networkPriority: "low", maxBitrate: 1500000 }]],
    ],
  );
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
  delete globalThis.RTCPeerConnection;
});
