// Weak-network behaviour of the call page: audio keeps priority over video, the
// page falls back to still pictures when the uplink cannot carry video (or when
// the doctor switches to low bandwidth by hand), and shows what the uplink
// carries. The decisions are in uplink-policy.js (pure); this module measures
// and applies (no DOM: tests/js runs it with fake connections); uplink-view.js
// shows.
//
// It works on whatever connections carry our camera and microphone, given by two
// functions of the page: senders() (the RTCRtpSenders of our tracks, on every
// connection that sends them) and connections() (the RTCPeerConnections whose
// stats describe our uplink). It re-reads both on every tick, so connections
// that come and go (peers, the recording leg, a server relay) need no hooks:
// within TICK_MS a new sender gets its priority and the current mode.
//
// The hand switch is kept in localStorage (STORAGE_KEY): a clinic's link is the
// same from one call to the next, so a doctor who needed it once finds it on.

import * as policy from "./uplink-policy.js";

const TICK_MS = 2000;
const HISTORY = 30;
export const STORAGE_KEY = "teleconsult.lowBandwidth";

// The page's localStorage, or null where reading it throws (storage blocked).
function localStore() {
  try {
    return globalThis.localStorage || null;
  } catch {
    return null;
  }
}

// Whether this computer's calls start in low-bandwidth mode (the hand switch,
// also set from the pre-call check's result).
export function readManual(storage = localStore()) {
  try {
    return storage?.getItem(STORAGE_KEY) === "on";
  } catch {
    return false;
  }
}

export function writeManual(on, storage = localStore()) {
  try {
    if (on) storage?.setItem(STORAGE_KEY, "on");
    else storage?.removeItem(STORAGE_KEY);
  } catch {
    // Storage refused (private mode): the switch still works for this page.
  }
}

export class Uplink {
  // onChange(uplink): after every tick and every switch (uplink.view() to show it).
  constructor({
    senders,
    connections,
    onChange = () => {},
    storage = localStore(),
    now = () => performance.now(),
  }) {
    this.senders = senders;
    this.connections = connections;
    this.onChange = onChange;
    this.storage = storage;
    this.now = now;
    this.manual = readManual(storage);
    this.auto = policy.initialAuto();
    this.counters = new WeakMap(); // pc -> counters of its previous report
    this.memos = new WeakMap(); // sender -> what planSender keeps
    this.last = null; // the last combined sample
    this.history = []; // sent kbit/s, for the sparkline
    this.lossHistory = []; // loss %, drawn under it
    this.timer = null;
    this.busy = false;
    this.applying = Promise.resolve(); // one setParameters round at a time
  }

  get decision() {
    return policy.decide(this.auto, this.manual);
  }

  start() {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.tick();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  // The low-bandwidth switch: on (stills) or off (back to what the link allows,
  // measured anew).
  async setManual(on) {
    this.manual = Boolean(on);
    this.auto = policy.initialAuto();
    writeManual(this.manual, this.storage);
    await this.applyAll();
    this.onChange(this);
  }

  async tick() {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.measure();
      await this.applyAll();
    } finally {
      this.busy = false;
    }
    this.onChange(this);
  }

  async measure() {
    const now = this.now();
    const samples = [];
    for (const pc of this.connections()) {
      if (!pc || pc.connectionState === "closed") continue;
      try {
        const { sample, counters } = policy.readUplink(await pc.getStats(), this.counters.get(pc), now);
        this.counters.set(pc, counters);
        if (pc.connectionState === "connected") samples.push(sample);
      } catch {
        // A connection closed under us: the next tick does without it.
      }
    }
    this.last = policy.combine(samples);
    if (this.last && this.last.sentKbps !== null) {
      this.history.push(this.last.sentKbps);
      this.lossHistory.push(this.last.lossPct || 0);
      if (this.history.length > HISTORY) this.history.shift();
      if (this.lossHistory.length > HISTORY) this.lossHistory.shift();
    }
    if (!this.manual) this.auto = policy.step(this.auto, this.last, now);
  }

  // Every sender gets its priority and the current mode's limits. Rounds run
  // one after the other: a getParameters/setParameters pair that overlaps
  // another on the same sender is refused (its transactionId is stale).
  applyAll() {
    this.applying = this.applying.then(() => this.applyRound()).catch((error) => {
      console.debug("uplink parameters", error); // the next round tries again
    });
    return this.applying;
  }

  async applyRound() {
    const { mode } = this.decision;
    for (const sender of this.senders()) {
      const track = sender && sender.track;
      if (!track || (track.kind !== "audio" && track.kind !== "video")) continue;
      try {
        const settings = track.kind === "video" && track.getSettings ? track.getSettings() : {};
        const memo = this.memos.get(sender);
        const plan = policy.planSender(track.kind, sender.getParameters(), mode, memo, settings);
        if (!plan.changed) {
          this.memos.set(sender, plan.memo);
          continue;
        }
        await sender.setParameters(plan.params);
        this.memos.set(sender, plan.memo);
      } catch (error) {
        // Not negotiated yet, or a parameter this browser refuses: next tick.
        console.debug("uplink parameters", track.kind, error);
      }
    }
  }

  // What the page shows.
  view() {
    const { mode, reason } = this.decision;
    return {
      mode,
      reason,
      sample: this.last,
      level: policy.uplinkLevel(this.last),
      history: this.history,
      lossHistory: this.lossHistory,
    };
  }
}
