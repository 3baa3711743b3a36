// The weak-network controller (web/static/js/uplink.js) with fake connections,
// senders and storage: the hand switch is kept and applied at once, measurements
// drive still mode, and a sender that refuses its parameters is tried again.

import assert from "node:assert/strict";
import { test } from "node:test";

import { STORAGE_KEY, Uplink } from "../../web/static/js/uplink.js";
import { ENTER_MS, STILL } from "../../web/static/js/uplink-policy.js";

class FakeSender {
  constructor(kind, encoding = {}) {
    this.track = kind ? { kind, getSettings: () => ({ width: 640, height: 480 }) } : null;
    this.params = { transactionId: "t0", encodings: [{ active: true, ...encoding }] };
    this.sets = 0;
    this.refuse = 0; // how many setParameters calls to refuse
  }

  getParameters() {
    return structuredClone(this.params);
  }

  async setParameters(params) {
    if (this.refuse > 0) {
      this.refuse -= 1;
      throw new Error("InvalidStateError");
    }
    this.sets += 1;
    this.params = structuredClone(params);
  }
}

class FakeStorage {
  constructor(items = {}) {
    this.items = new Map(Object.entries(items));
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

// A connection whose sender-side counters grow at `kbps` with this estimate.
function fakePc({ kbps = 800, available = 2_000_000, fps = 24, limitation = "none" } = {}) {
  const pc = { connectionState: "connected", bytes: 0, frames: 0 };
  pc.advance = (seconds) => {
    pc.bytes += (kbps * 1000 * seconds) / 8;
    pc.frames += fps * seconds;
  };
  pc.getStats = async () =>
    new Map(
      [
        { id: "CP", type: "candidate-pair", nominated: true, state: "succeeded", availableOutgoingBitrate: available, currentRoundTripTime: 0.2 },
        { id: "OV", type: "outbound-rtp", kind: "video", bytesSent: pc.bytes, packetsSent: pc.bytes / 1000, framesSent: pc.frames, qualityLimitationReason: limitation },
      ].map((s) => [s.id, s]),
    );
  return pc;
}

function setup({ storage = new FakeStorage(), pc = fakePc(), senders } = {}) {
  const audio = new FakeSender("audio");
  const video = new FakeSender("video", { maxBitrate: 500_000 }); // e.g. the recording leg's cap
  const all = senders || [audio, video];
  let now = 0;
  const changes = [];
  const uplink = new Uplink({
    senders: () => all,
    connections: () => [pc],
    onChange: (u) => changes.push(u.view().mode),
    storage,
    now: () => now,
  });
  const advance = async (ms) => {
    now += ms;
    pc.advance(ms / 1000);
    await uplink.tick();
  };
  return { uplink, audio, video, storage, changes, advance };
}

test("the hand switch is applied at once, kept in storage, and undone", async () => {
  const { uplink, audio, video, storage, changes } = setup();
  assert.equal(uplink.decision.mode, "video");
  await uplink.setManual(true);
  assert.equal(storage.getItem(STORAGE_KEY), "on");
  assert.deepEqual(uplink.view().reason, "manual");
  assert.equal(audio.params.encodings[0].priority, "high");
  const e = video.params.encodings[0];
  assert.equal(e.maxFramerate, STILL.maxFramerate);
  assert.equal(e.maxBitrate, STILL.maxBitrate);
  assert.equal(video.params.degradationPreference, "maintain-resolution");
  assert.deepEqual(changes, ["still"]);

  await uplink.setManual(false);
  assert.equal(storage.getItem(STORAGE_KEY), null);
  assert.equal(video.params.encodings[0].maxBitrate, 500_000); // the other cap is back
  assert.equal("maxFramerate" in video.params.encodings[0], false);
  assert.equal(audio.params.encodings[0].priority, "high");
});

test("a page opened with the switch on in storage sends stills from its first tick", async () => {
  const { uplink, video, advance } = setup({ storage: new FakeStorage({ [STORAGE_KEY]: "on" }) });
  assert.deepEqual(uplink.decision, { mode: "still", reason: "manual" });
  await advance(2000);
  assert.equal(video.params.encodings[0].maxFramerate, STILL.maxFramerate);
});

test("storage that refuses does not stop the switch", async () => {
  const storage = new FakeStorage();
  storage.setItem = () => {
    throw new Error("QuotaExceededError");
  };
  storage.getItem = () => {
    throw new Error("SecurityError");
  };
  const { uplink, video } = setup({ storage });
  assert.equal(uplink.manual, false);
  await uplink.setManual(true);
  assert.equal(video.params.encodings[0].maxFramerate, STILL.maxFramerate);
  // Without localStorage at all (node has none here): off, and no error.
  assert.equal(new Uplink({ senders: () => [], connections: () => [] }).manual, false);
});

test("a weak link measured for ENTER_MS puts the page on stills; a good one does not", async () => {
  const good = setup();
  for (let i = 0; i < 10; i++) await good.advance(2000);
  assert.equal(good.uplink.decision.mode, "video");
  assert.ok(good.uplink.view().sample.sentKbps > 700);
  assert.equal(good.uplink.view().history.length, 9); // the first report has no rate

  const { uplink, video, advance } = setup({ pc: fakePc({ kbps: 120, available: 90_000, fps: 2, limitation: "bandwidth" }) });
  await advance(2000); // the first report is bad already (the estimate)
  for (let t = 2000; t < ENTER_MS; t += 2000) await advance(2000); // bad for 6 s
  assert.equal(uplink.decision.mode, "video");
  assert.equal(uplink.view().level, 1);
  await advance(2000); // 8 s
  assert.deepEqual(uplink.decision, { mode: "still", reason: "auto" });
  assert.equal(video.params.encodings[0].maxFramerate, STILL.maxFramerate);
  // The hand switch on and off again starts the measurement anew.
  await uplink.setManual(true);
  await uplink.setManual(false);
  assert.equal(uplink.decision.mode, "video");
});

test("a sender that refuses its parameters does not hold up the others and is tried again", async () => {
  const { audio, video, advance } = setup();
  video.refuse = 1;
  await advance(2000);
  assert.equal(audio.params.encodings[0].priority, "high");
  assert.equal(video.params.encodings[0].priority, undefined);
  await advance(2000);
  assert.equal(video.params.encodings[0].priority, "low");
  // Nothing to change: no further setParameters.
  const sets = video.sets + audio.sets;
  await advance(2000);
  assert.equal(video.sets + audio.sets, sets);
});

test("senders without a track (audio-only mode) are left alone", async () => {
  const idle = new FakeSender(null);
  const { uplink } = setup({ senders: [idle] });
  await uplink.setManual(true);
  assert.equal(idle.sets, 0);
});
