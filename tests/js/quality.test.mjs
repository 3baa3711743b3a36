// Connection quality (web/static/js/quality.js) from getStats() reports as
// Chromium and Firefox give them.

import assert from "node:assert/strict";
import { test } from "node:test";

import { QualityMeter } from "../../web/static/js/quality.js";

function fakePc(stats) {
  return { getStats: async () => new Map(stats.map((s) => [s.id, s])) };
}

const inbound = { id: "in", type: "inbound-rtp", kind: "video", bytesReceived: 1000, packetsReceived: 100, packetsLost: 0 };

test("Chromium: the selected pair's round trip", async () => {
  const pc = fakePc([
    { id: "t", type: "transport", selectedCandidatePairId: "cp" },
    { id: "cp", type: "candidate-pair", currentRoundTripTime: 0.04, localCandidateId: "l", remoteCandidateId: "r" },
    inbound,
  ]);
  const q = await new QualityMeter().sample(pc);
  assert.equal(q.rttMs, 40);
  assert.equal(q.level, 4);
});

test("Firefox: no currentRoundTripTime, the RTCP round trip stands in", async () => {
  const pc = fakePc([
    // Firefox: a nominated, succeeded pair without currentRoundTripTime.
    { id: "cp", type: "candidate-pair", nominated: true, state: "succeeded", localCandidateId: "l", remoteCandidateId: "r" },
    { id: "ri", type: "remote-inbound-rtp", kind: "video", roundTripTime: 0.2 },
    { id: "ra", type: "remote-inbound-rtp", kind: "audio", roundTripTime: 0.05 },
    inbound,
  ]);
  const q = await new QualityMeter().sample(pc);
  assert.equal(q.rttMs, 200);
  assert.equal(q.level, 3);
});
