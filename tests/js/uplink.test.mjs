// Weak-network decisions (web/static/js/uplink-policy.js): what getStats says
// about the uplink, when the page falls back to stills and back (thresholds,
// hysteresis, the hand switch), and the sender parameters each mode asks for.

import assert from "node:assert/strict";
import { test } from "node:test";

import * as p from "../../web/static/js/uplink-policy.js";

// A combined sample as combine() makes them.
const sample = (over = {}) => ({
  sentKbps: 800,
  availableKbps: 1000,
  rttMs: 80,
  lossPct: 0,
  video: { fps: 24, kbps: 700, limitation: null },
  ...over,
});
const weak = sample({ availableKbps: 90, video: { fps: 2, kbps: 80, limitation: "bandwidth" } });

// Feed one sample every `every` ms from `from` to `to` (exclusive); the last state.
function run(auto, s, from, to, every = 2000) {
  let state = auto;
  for (let now = from; now < to; now += every) state = p.step(state, s, now);
  return state;
}

// -- measuring ------------------------------------------------------------------------

const report = (items) => new Map(items.map((s) => [s.id, s]));

function chromiumReport({ bytes, packets, frames, lost, available = 1_200_000, limitation = "none", fps = 24 }) {
  return report([
    { id: "T", type: "transport", selectedCandidatePairId: "CP" },
    { id: "CP", type: "candidate-pair", currentRoundTripTime: 0.12, availableOutgoingBitrate: available },
    { id: "OA", type: "outbound-rtp", kind: "audio", bytesSent: bytes.audio, packetsSent: packets.audio },
    {
      id: "OV",
      type: "outbound-rtp",
      kind: "video",
      bytesSent: bytes.video,
      packetsSent: packets.video,
      framesSent: frames,
      framesPerSecond: fps,
      qualityLimitationReason: limitation,
    },
    { id: "RA", type: "remote-inbound-rtp", kind: "audio", packetsLost: lost.audio, fractionLost: 0.05, roundTripTime: 0.1 },
    { id: "RV", type: "remote-inbound-rtp", kind: "video", packetsLost: lost.video, fractionLost: 0.1, roundTripTime: 0.13 },
  ]);
}

test("one connection: sent bitrate, loss and frame rate from the deltas of two reports", () => {
  const first = p.readUplink(
    chromiumReport({ bytes: { audio: 0, video: 0 }, packets: { audio: 0, video: 0 }, frames: 0, lost: { audio: 0, video: 0 } }),
    undefined,
    0,
  );
  assert.equal(first.sample.sentKbps, null);
  assert.equal(first.sample.lossPct, 10); // the receivers' last fractionLost until there are deltas
  assert.equal(first.sample.availableKbps, 1200);
  assert.equal(first.sample.rttMs, 120); // the selected pair's, not RTCP's
  const second = p.readUplink(
    chromiumReport({
      bytes: { audio: 10_000, video: 240_000 },
      packets: { audio: 100, video: 300 },
      frames: 48,
      lost: { audio: 4, video: 16 },
    }),
    first.counters,
    2000,
  );
  assert.equal(second.sample.sentKbps, 1000); // 250 kB in 2 s
  assert.equal(second.sample.lossPct, 5); // 20 of 400
  assert.equal(second.sample.video.fps, 24);
  assert.equal(second.sample.video.kbps, 960);
  assert.equal(second.sample.video.limitation, null);
});

test("audio only: no video in the sample, and nothing says the link is bad", () => {
  const r = report([
    { id: "CP", type: "candidate-pair", nominated: true, state: "succeeded", availableOutgoingBitrate: 500_000 },
    { id: "OA", type: "outbound-rtp", kind: "audio", bytesSent: 100, packetsSent: 10 },
  ]);
  const { sample } = p.readUplink(r, undefined, 0);
  assert.equal(sample.video, null);
  assert.equal(sample.rttMs, null);
  assert.equal(p.isBad(p.combine([sample])), false);
});

test("several connections: totals and loss over all; the one that does best decides", () => {
  const a = { sentKbps: 500, availableKbps: 900, rttMs: 100, lost: 1, sent: 100, lossPct: 1, video: { fps: 24, kbps: 450, limitation: null } };
  const b = { sentKbps: 200, availableKbps: 140, rttMs: 300, lost: 9, sent: 100, lossPct: 9, video: { fps: 2, kbps: 150, limitation: "bandwidth" } };
  const c = p.combine([a, null, b]);
  assert.equal(c.sentKbps, 700);
  assert.equal(c.availableKbps, 900);
  assert.equal(c.rttMs, 300);
  assert.equal(c.lossPct, 5);
  assert.deepEqual(c.video, { fps: 24, kbps: 600, limitation: null });
  assert.equal(p.isBad(c), false);
  // One connection's weak estimate (a participant's downlink, the recorder)
  // does not put the whole page on stills; all of them weak does.
  assert.equal(p.isBad(p.combine([b, { ...b, availableKbps: 120 }])), true);
  assert.equal(p.combine([]), null);
});

// -- deciding -------------------------------------------------------------------------

test("each sign of a weak link counts, and a low frame rate alone does not", () => {
  assert.equal(p.isBad(sample()), false);
  assert.equal(p.isBad(sample({ availableKbps: p.ENTER_KBPS - 1 })), true);
  assert.equal(p.isBad(sample({ availableKbps: p.ENTER_KBPS })), false);
  assert.equal(p.isBad(sample({ lossPct: p.BAD_LOSS_PCT })), true);
  assert.equal(p.isBad(sample({ video: { fps: 1, kbps: 50, limitation: "bandwidth" } })), true);
  // A still camera or a CPU limit is not the network's fault.
  assert.equal(p.isBad(sample({ video: { fps: 1, kbps: 50, limitation: null } })), false);
  assert.equal(p.isBad(sample({ video: { fps: 1, kbps: 50, limitation: "cpu" } })), false);
  assert.equal(p.isBad(null), false);
});

test("stills only after the link stays weak for ENTER_MS; a short dip is ignored", () => {
  let a = p.initialAuto();
  a = run(a, weak, 0, p.ENTER_MS - 2000); // 0 .. 4 s weak: not yet
  assert.equal(a.mode, "video");
  a = p.step(a, sample(), 6000); // recovers: the count starts again
  a = run(a, weak, 8000, 8000 + p.ENTER_MS);
  assert.equal(a.mode, "video");
  a = p.step(a, weak, 8000 + p.ENTER_MS);
  assert.equal(a.mode, "still");
  assert.equal(a.since, 8000 + p.ENTER_MS);
  assert.equal(a.hold, p.HOLD_MS);
  assert.deepEqual(p.decide(a, false), { mode: "still", reason: "auto" });
});

test("no measurement (not connected yet) is not a weak link", () => {
  const a = run(p.initialAuto(), null, 0, 60000);
  assert.equal(a.mode, "video");
});

function enterStill(at = 0) {
  return run(p.initialAuto(), weak, at, at + p.ENTER_MS + 1);
}

test("video is tried again after the hold, unless even the stills barely fit", () => {
  const a = enterStill();
  const t0 = a.since;
  // While sending stills the estimate stays low (it cannot rise far above what
  // is sent): that alone does not keep the page in still mode.
  const stillLink = sample({ availableKbps: 140, video: { fps: 1, kbps: 40, limitation: null } });
  let b = run(a, stillLink, t0 + 2000, t0 + p.HOLD_MS);
  assert.equal(b.mode, "still");
  b = p.step(b, stillLink, t0 + p.HOLD_MS);
  assert.equal(b.mode, "video");
  assert.equal(b.leftAt, t0 + p.HOLD_MS);
  // A hopeless link: under HOPELESS_KBPS, or heavy loss.
  const hopeless = sample({ availableKbps: p.HOPELESS_KBPS - 10, video: null });
  assert.equal(run(a, hopeless, t0 + 2000, t0 + 3 * p.HOLD_MS).mode, "still");
  assert.equal(run(a, sample({ lossPct: 30 }), t0 + 2000, t0 + 3 * p.HOLD_MS).mode, "still");
});

test("a clearly good estimate ends still mode early, but not before MIN_HOLD_MS", () => {
  const a = enterStill();
  const t0 = a.since;
  const good = sample({ availableKbps: p.EXIT_KBPS + 100, video: { fps: 1, kbps: 40, limitation: null } });
  let b = run(a, good, t0 + 1000, t0 + p.MIN_HOLD_MS, 1000);
  assert.equal(b.mode, "still"); // good since t0+1 s, but only 9 s
  b = run(b, good, t0 + p.MIN_HOLD_MS, t0 + p.GOOD_MS + 1000, 1000);
  assert.equal(b.mode, "still"); // good for 9 s
  b = p.step(b, good, t0 + p.GOOD_MS + 1000);
  assert.equal(b.mode, "video"); // good for 10 s, 11 s into still mode
  assert.ok(t0 + p.GOOD_MS + 1000 < t0 + p.HOLD_MS);
  // One bad sample in between starts the count again.
  let c = run(a, good, t0 + 1000, t0 + 8000, 1000);
  c = p.step(c, sample({ lossPct: 15 }), t0 + 8000);
  c = run(c, good, t0 + 9000, t0 + 18000, 1000);
  assert.equal(c.mode, "still");
});

test("a link that fails again soon after is held twice as long each time, up to HOLD_MAX_MS", () => {
  let a = enterStill();
  const holds = [a.hold];
  for (let i = 0; i < 5; i++) {
    const left = run(a, sample(), a.since + 2000, a.since + a.hold + 1); // tries video again
    assert.equal(left.mode, "video");
    a = run(left, weak, left.leftAt + 2000, left.leftAt + 2000 + p.ENTER_MS + 1);
    assert.equal(a.mode, "still");
    holds.push(a.hold);
  }
  assert.deepEqual(holds, [p.HOLD_MS, 40000, 80000, p.HOLD_MAX_MS, p.HOLD_MAX_MS, p.HOLD_MAX_MS]);
  // After a good minute the hold is back to the first one.
  const left = run(a, sample(), a.since + 2000, a.since + a.hold + 1);
  const later = run(left, sample(), left.leftAt + 2000, left.leftAt + p.RECENT_MS + 2000);
  const again = run(later, weak, later.badSince ?? left.leftAt + p.RECENT_MS + 2000, left.leftAt + p.RECENT_MS + 4000 + p.ENTER_MS);
  assert.equal(again.mode, "still");
  assert.equal(again.hold, p.HOLD_MS);
});

test("the hand switch wins over the measurements either way", () => {
  const fine = p.initialAuto();
  assert.deepEqual(p.decide(fine, false), { mode: "video", reason: null });
  assert.deepEqual(p.decide(fine, true), { mode: "still", reason: "manual" });
  assert.deepEqual(p.decide(enterStill(), true), { mode: "still", reason: "manual" });
});

// -- applying -------------------------------------------------------------------------

const params = (encoding = {}, extra = {}) => ({ transactionId: "x", encodings: [{ active: true, ...encoding }], ...extra });

test("audio is sent at high priority in both modes", () => {
  for (const mode of ["video", "still"]) {
    const plan = p.planSender("audio", params(), mode);
    assert.equal(plan.changed, true);
    assert.equal(plan.params.encodings[0].priority, "high");
    assert.equal(plan.params.encodings[0].networkPriority, "high");
    assert.equal(plan.params.encodings[0].maxFramerate, undefined);
    assert.equal(p.planSender("audio", plan.params, mode, plan.memo).changed, false);
  }
});

test("stills: one frame a second, a low cap, a smaller picture; back to normal restores the others' cap", () => {
  // The recording leg caps its video at 500 kbit/s; still mode goes under it and back.
  const recording = params({ maxBitrate: 500_000 });
  const normal = p.planSender("video", recording, "video");
  assert.equal(normal.params.encodings[0].priority, "low");
  // Unset, the browser's default ("balanced"): a fresh sender is left so.
  assert.equal(normal.params.degradationPreference, undefined);
  assert.equal(normal.params.encodings[0].maxBitrate, 500_000);

  const still = p.planSender("video", normal.params, "still", normal.memo, { width: 640, height: 480 });
  const e = still.params.encodings[0];
  assert.equal(still.changed, true);
  assert.equal(e.maxFramerate, p.STILL.maxFramerate);
  assert.equal(e.maxBitrate, p.STILL.maxBitrate);
  assert.equal(e.scaleResolutionDownBy, 1.34); // 477 x 358 out of 640 x 480
  assert.equal(still.params.degradationPreference, "maintain-resolution");
  assert.equal(p.planSender("video", still.params, "still", still.memo, { width: 640, height: 480 }).changed, false);

  // Someone else sets their cap again meanwhile: still
  // mode is put back, and their new cap is what comes back later.
  const overwritten = { ...still.params, encodings: [{ ...e, maxBitrate: 400_000 }] };
  const again = p.planSender("video", overwritten, "still", still.memo, { width: 640, height: 480 });
  assert.equal(again.changed, true);
  assert.equal(again.params.encodings[0].maxBitrate, p.STILL.maxBitrate);

  const back = p.planSender("video", again.params, "video", again.memo);
  assert.equal(back.changed, true);
  assert.equal(back.params.encodings[0].maxBitrate, 400_000);
  assert.equal("maxFramerate" in back.params.encodings[0], false);
  assert.equal(back.params.encodings[0].scaleResolutionDownBy, 1);
  assert.equal(back.params.degradationPreference, "balanced");
});

test("stills under a cap lower than ours keep that cap; without any cap none comes back", () => {
  const low = p.planSender("video", params({ maxBitrate: 40_000 }), "still", {}, { width: 320, height: 240 });
  assert.equal(low.params.encodings[0].maxBitrate, 40_000);
  assert.equal(low.params.encodings[0].scaleResolutionDownBy, 1);
  assert.equal(p.planSender("video", low.params, "still", low.memo, { width: 320, height: 240 }).changed, false);

  const free = p.planSender("video", params(), "still", {}, { width: 1280, height: 720 });
  assert.equal(free.params.encodings[0].scaleResolutionDownBy, 2.67); // 480 x 270
  const back = p.planSender("video", free.params, "video", free.memo);
  assert.equal("maxBitrate" in back.params.encodings[0], false);
});

test("a sender not negotiated yet (no encodings) is left alone", () => {
  const plan = p.planSender("video", { encodings: [] }, "still");
  assert.equal(plan.changed, false);
});

// -- showing --------------------------------------------------------------------------

test("the uplink's bars", () => {
  assert.equal(p.uplinkLevel(null), 0);
  assert.equal(p.uplinkLevel(sample()), 4);
  assert.equal(p.uplinkLevel(sample({ lossPct: 3 })), 3);
  assert.equal(p.uplinkLevel(sample({ rttMs: 350 })), 2);
  assert.equal(p.uplinkLevel(sample({ lossPct: 12 })), 1);
  assert.equal(p.uplinkLevel(weak), 1);
});

test("sparkline and loss columns share their places", () => {
  assert.equal(p.sparkPoints([5]), "");
  const points = p.sparkPoints([0, 10], 60, 18).split(" ");
  assert.equal(points.length, 2);
  assert.equal(points[1].split(",")[0], "60.0");
  assert.equal(p.columnsPath([0, 40], 60, 18), "M60.0,18V0.0");
  assert.equal(p.columnsPath([0, 0]), "");
});

test("a sender made with its priority and cap is left as it is in video mode", () => {
  // The recording leg makes its senders so (sendEncodings): any setParameters
  // once the call is up reconfigured Chromium's encoder right after its first
  // keyframe, and it skipped 1-2 camera frames.
  for (const [kind, encoding] of [
    ["audio", { priority: "high", networkPriority: "high" }],
    ["video", { priority: "low", networkPriority: "low", maxBitrate: 1_500_000 }],
  ]) {
    const plan = p.planSender(kind, params(encoding), "video", {}, { width: 640, height: 480 });
    assert.equal(plan.changed, false, kind);
  }
});
