// The relayed picture's playout delay (web/static/js/playout.js): raised by a
// step per freeze, bounded, given back slowly after a quiet spell.

import assert from "node:assert/strict";
import { test } from "node:test";

import * as p from "../../web/static/js/playout.js";

test("a clean link keeps no added delay", () => {
  let s = p.initial();
  for (let t = 0; t < 120_000; t += 2000) s = p.step(s, 0, t);
  assert.equal(s.targetMs, 0);
});

test("each freeze raises the delay by a step, up to the bound", () => {
  let s = p.step(p.initial(), 0, 0);
  s = p.step(s, 1, 2000);
  assert.equal(s.targetMs, p.PLAYOUT.stepMs);
  s = p.step(s, 3, 4000);
  assert.equal(s.targetMs, 3 * p.PLAYOUT.stepMs);
  s = p.step(s, 30, 6000);
  assert.equal(s.targetMs, p.PLAYOUT.maxMs);
});

test("the delay comes back down only after a quiet spell, a little at a time", () => {
  let s = p.step(p.step(p.initial(), 0, 0), 2, 2000);
  assert.equal(s.targetMs, 200);
  s = p.step(s, 2, 2000 + p.PLAYOUT.quietMs - 1);
  assert.equal(s.targetMs, 200);
  s = p.step(s, 2, 2000 + p.PLAYOUT.quietMs);
  assert.equal(s.targetMs, 200 - p.PLAYOUT.backMs);
  // A freeze in between starts the quiet spell again.
  s = p.step(s, 3, 2000 + p.PLAYOUT.quietMs + 1000);
  assert.equal(s.targetMs, 250);
  s = p.step(s, 3, 2000 + 2 * p.PLAYOUT.quietMs);
  assert.equal(s.targetMs, 250);
});

test("a new connection (the count starts again) is not taken for fewer freezes", () => {
  let s = p.step(p.step(p.initial(), 5, 0), 6, 2000);
  assert.equal(s.targetMs, 100);
  s = p.step(s, 0, 4000);
  assert.equal(s.targetMs, 100);
  s = p.step(s, 1, 6000);
  assert.equal(s.targetMs, 200);
});

test("the freeze count is read from the video's inbound-rtp", () => {
  const report = new Map([
    ["A", { type: "inbound-rtp", kind: "audio" }],
    ["V", { type: "inbound-rtp", kind: "video", freezeCount: 4 }],
  ]);
  assert.equal(p.freezesIn(report), 4);
  assert.equal(p.freezesIn(new Map()), null);
});
