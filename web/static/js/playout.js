// How long a relayed picture waits in the page before it is shown.
//
// Through the relay, the page's connection runs to the server, a few
// milliseconds away, while the packets it shows crossed the sender's uplink
// first: on a township link a lost packet comes back a round trip (150-300 ms)
// later. Chromium sizes its jitter buffer by the round trip it measures and
// leaves frames held by a retransmission out of its jitter estimate, so each
// such loss froze the picture (10-12 freezes in 15 s at 5 % loss against none
// browser to browser, where the round trip is the sender's own). The page
// therefore raises the relayed video's jitterBufferTarget by a step for each
// freeze it sees, up to a bound, and gives it back slowly once the picture
// has run smoothly for a while: a clean link keeps its low delay.
//
// The server tells the same thing sooner: while the sender's packets need
// retransmissions, each relayed packet carries the time they take as the
// playout-delay extension's minimum (media/hold.py), and Chromium holds the
// picture for the larger of the two from the first repair on.

export const PLAYOUT = Object.freeze({ stepMs: 100, maxMs: 600, quietMs: 30000, backMs: 50 });

export const initial = () => ({ targetMs: 0, freezes: null, since: 0 });

// The next state from a sample: `freezes` (inbound-rtp freezeCount of the
// relayed video) at time `now` (ms).
export function step(state, freezes, now) {
  if (freezes === null || freezes === undefined) return state;
  if (state.freezes === null || freezes < state.freezes) {
    return { ...state, freezes, since: now }; // first sample, or a new connection
  }
  if (freezes > state.freezes) {
    const targetMs = Math.min(PLAYOUT.maxMs, state.targetMs + PLAYOUT.stepMs * (freezes - state.freezes));
    return { targetMs, freezes, since: now };
  }
  if (state.targetMs > 0 && now - state.since >= PLAYOUT.quietMs) {
    return { targetMs: Math.max(0, state.targetMs - PLAYOUT.backMs), freezes, since: now };
  }
  return state;
}

// The relayed video's freeze count in a getStats() report (null if none).
export function freezesIn(report) {
  let freezes = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video" && typeof s.freezeCount === "number") {
      freezes = s.freezeCount;
    }
  });
  return freezes;
}
