// Weak-network behaviour, the pure part (no DOM, no timers, no WebRTC objects):
// what getStats() says about our uplink, when the page falls back to still
// pictures, and which RTCRtpSender parameters each mode asks for. uplink.js
// drives it; tests/js/uplink.test.mjs checks it.
//
// Township clinics have ~1 Mbit/s up, 5-10 % loss and long round trips. Voice
// must survive; video gives way first:
//
// - always: audio encodings priority / networkPriority "high", video "low"
//   (Chromium weighs the bandwidth it shares out by priority), Opus with in-band
//   FEC (Chromium's default, `useinbandfec=1`, nothing to set from the page);
// - "still" mode: the video sender stays (no renegotiation) but is capped to
//   STILL.maxFramerate frames per second, STILL.maxBitrate and a long side of
//   STILL.longSide pixels, with degradationPreference "maintain-resolution", so
//   each picture stays sharp. Measured in Chromium 156: maxFramerate is truncated
//   to a whole number and anything below 1 stops the video altogether (0.4, 0.5
//   and 0.9 gave no frame in 8 s; 1 and 1.5 gave one frame a second), so one
//   still a second is as slow as the encoder goes. At the capped bitrate that is
//   ~10-60 kbit/s of video.
//
// The page goes to still mode by hand (the low-bandwidth control) or by itself
// when the link cannot carry video: for ENTER_MS the measurements stay bad (the
// estimated available outgoing bitrate under ENTER_KBPS, or the encoder limited
// by bandwidth to under MIN_FPS, or the receivers report more than BAD_LOSS_PCT
// loss). It tries video again after a hold, HOLD_MS the first time and twice as
// long each time the link fails again within RECENT_MS (up to HOLD_MAX_MS), so a
// link at the edge does not flap; or earlier, after MIN_HOLD_MS, if the estimate
// stays above EXIT_KBPS for GOOD_MS. (While sending stills Chromium's estimate
// cannot rise far above what is sent, so the hold, not the estimate, usually
// ends still mode.) It stays in still mode while the estimate is under
// HOPELESS_KBPS: then even the stills and the voice barely fit.
//
// Measured (tests/e2e/test_weaknet_browser.py, both pages behind one 300 kbit/s
// tbf on lo): the estimate fell from 3.3 Mbit/s to 80-110 kbit/s with 20-28 %
// loss and 1.3 s round trips, and the page went to stills 12 s after the
// bottleneck came (8 s of ENTER_MS after the first bad sample). Sending stills,
// the estimate stayed at 50-135 kbit/s (Chromium lets it rise only to ~1.5x what
// is sent); with the bottleneck gone the page went back to video at the end of
// its hold, and Chromium took ~35 s to climb back to 20 fps. Behind 1 Mbit/s
// (shared by both pages) with 8 % random UDP loss (nftables), the page kept
// video: 20 fps at 160-280 kbit/s, estimate 215-410 kbit/s, measured loss
// 1-15 % per 2 s window; no still mode in 40 s.

export const ENTER_KBPS = 150;
export const EXIT_KBPS = 300;
export const HOPELESS_KBPS = 60;
export const MIN_FPS = 3;
export const BAD_LOSS_PCT = 20;
export const ENTER_MS = 8000;
export const GOOD_MS = 10000;
export const MIN_HOLD_MS = 10000;
export const HOLD_MS = 20000;
export const HOLD_MAX_MS = 160000;
export const RECENT_MS = 60000;

export const STILL = Object.freeze({ maxFramerate: 1, maxBitrate: 60000, longSide: 480 });

// -- measuring ------------------------------------------------------------------------

function selectedPair(byId) {
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = byId.get(s.selectedCandidatePairId);
      if (pair) return pair;
    }
  }
  for (const s of byId.values()) {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") return s;
  }
  return null;
}

// One connection's getStats() report (a Map or anything with forEach) and the
// counters returned for its previous report: what we send on it.
// Returns {sample, counters}; sample:
//   sentKbps      all we sent on it (audio + video), null on the first report
//   availableKbps the sender's bandwidth estimate (candidate pair), or null
//   rttMs         the selected pair's round trip, else the largest RTCP one
//   lost, sent    packets lost (as the receivers report) and sent since the previous report
//   lossPct       lost / sent in %, else the receivers' last fractionLost
//   video         null when no video goes out, else {fps, kbps, limitation}
export function readUplink(report, previous, now) {
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  let bytes = 0;
  let packets = 0;
  let lost = 0;
  let videoBytes = 0;
  let frames = 0;
  let fpsReported = null;
  let limitation = null;
  let video = false;
  const fractions = [];
  const rtcpRtts = [];
  for (const s of byId.values()) {
    if (s.type === "outbound-rtp") {
      bytes += s.bytesSent || 0;
      packets += s.packetsSent || 0;
      if (s.kind === "video") {
        video = video || s.active !== false;
        videoBytes += s.bytesSent || 0;
        frames += s.framesSent || s.framesEncoded || 0;
        if (typeof s.framesPerSecond === "number") {
          fpsReported = Math.max(fpsReported || 0, s.framesPerSecond);
        }
        const reason = s.qualityLimitationReason;
        if (reason && reason !== "none") limitation = reason;
      }
    } else if (s.type === "remote-inbound-rtp") {
      lost += Math.max(0, s.packetsLost || 0);
      if (typeof s.fractionLost === "number") fractions.push(s.fractionLost);
      if (typeof s.roundTripTime === "number") rtcpRtts.push(s.roundTripTime);
    }
  }
  const pair = selectedPair(byId);
  const estimate = pair && pair.availableOutgoingBitrate;
  const available = typeof estimate === "number" ? estimate : null;
  let rtt = pair && typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime : null;
  if (rtt === null && rtcpRtts.length) rtt = Math.max(...rtcpRtts);

  const counters = { at: now, bytes, packets, lost, videoBytes, frames };
  const seconds = previous ? (now - previous.at) / 1000 : 0;
  const rate = (a, b) => (seconds > 0 ? Math.max(0, ((a - b) * 8) / 1000 / seconds) : null);
  const dSent = previous ? packets - previous.packets : 0;
  const dLost = previous ? Math.max(0, lost - previous.lost) : 0;
  let lossPct = null;
  if (previous && dSent > 0) lossPct = Math.min(100, (100 * dLost) / dSent);
  else if (fractions.length) lossPct = 100 * Math.max(...fractions);
  let fps = null;
  if (previous && seconds > 0) fps = Math.max(0, (frames - previous.frames) / seconds);
  else if (fpsReported !== null) fps = fpsReported;
  return {
    counters,
    sample: {
      sentKbps: previous ? rate(bytes, previous.bytes) : null,
      availableKbps: available === null ? null : available / 1000,
      rttMs: rtt === null ? null : rtt * 1000,
      lost: dLost,
      sent: Math.max(0, dSent),
      lossPct,
      video: video
        ? { fps, kbps: previous ? rate(videoBytes, previous.videoBytes) : null, limitation }
        : null,
    },
  };
}

// The uplink as a whole from its connections' samples: what is sent in total,
// the loss over all packets, the longest round trip. For the decision, the
// connection that does best: all of them cross our one uplink, so the best
// estimate (and the best frame rate) is what the uplink can carry; a worse one
// says more about that connection (a participant's weak downlink, or the
// recorder, whose missing transport-cc makes Chromium's estimate climb slowly and
// fall to 30-100 kbit/s under 10 % loss, as measured on these machines).
export function combine(samples) {
  const live = samples.filter(Boolean);
  if (!live.length) return null;
  const known = (values) => values.filter((v) => v !== null && v !== undefined);
  const sum = (values) => (values.length ? values.reduce((a, b) => a + b, 0) : null);
  const sent = live.reduce((n, s) => n + s.sent, 0);
  const lost = live.reduce((n, s) => n + s.lost, 0);
  const fallbackLoss = known(live.map((s) => s.lossPct));
  const rtts = known(live.map((s) => s.rttMs));
  const available = known(live.map((s) => s.availableKbps));
  const videos = live.map((s) => s.video).filter(Boolean);
  // The video that does best: the highest frame rate (unmeasured counts as none).
  const best = videos.reduce((a, b) => ((b.fps ?? -1) > (a.fps ?? -1) ? b : a), videos[0]);
  return {
    sentKbps: sum(known(live.map((s) => s.sentKbps))),
    availableKbps: available.length ? Math.max(...available) : null,
    rttMs: rtts.length ? Math.max(...rtts) : null,
    lossPct: sent > 0 ? (100 * lost) / sent : fallbackLoss.length ? Math.max(...fallbackLoss) : null,
    video: best
      ? { fps: best.fps, kbps: sum(known(videos.map((v) => v.kbps))), limitation: best.limitation }
      : null,
  };
}

// -- deciding -------------------------------------------------------------------------

// Too weak for video: one of the three signs (a null sample, or one without
// numbers, says nothing).
export function isBad(sample) {
  if (!sample) return false;
  if (sample.availableKbps !== null && sample.availableKbps < ENTER_KBPS) return true;
  if (sample.lossPct !== null && sample.lossPct >= BAD_LOSS_PCT) return true;
  const v = sample.video;
  return Boolean(v && v.limitation === "bandwidth" && v.fps !== null && v.fps < MIN_FPS);
}

export function isGood(sample) {
  if (!sample || sample.availableKbps === null) return false;
  return sample.availableKbps >= EXIT_KBPS && (sample.lossPct === null || sample.lossPct < BAD_LOSS_PCT / 2);
}

function isHopeless(sample) {
  if (!sample) return false;
  if (sample.availableKbps !== null && sample.availableKbps < HOPELESS_KBPS) return true;
  return sample.lossPct !== null && sample.lossPct >= BAD_LOSS_PCT;
}

// The automatic decision's state: "video" or "still", since when, and the
// counters of its hysteresis.
export function initialAuto() {
  return { mode: "video", since: null, badSince: null, goodSince: null, hold: HOLD_MS, leftAt: null };
}

// One measurement (`sample`, from combine) at time `now` (ms): the next state.
export function step(auto, sample, now) {
  if (auto.mode === "video") {
    const bad = isBad(sample);
    const badSince = bad ? (auto.badSince ?? now) : null;
    if (bad && now - badSince >= ENTER_MS) {
      const again = auto.leftAt !== null && now - auto.leftAt < RECENT_MS;
      const hold = again ? Math.min(auto.hold * 2, HOLD_MAX_MS) : HOLD_MS;
      return { ...auto, mode: "still", since: now, badSince: null, goodSince: null, hold };
    }
    return { ...auto, badSince };
  }
  const goodSince = isGood(sample) ? (auto.goodSince ?? now) : null;
  const held = now - auto.since;
  const tryAgain = held >= auto.hold && !isHopeless(sample);
  const recovered = held >= MIN_HOLD_MS && goodSince !== null && now - goodSince >= GOOD_MS;
  if (tryAgain || recovered) {
    return { ...auto, mode: "video", since: now, badSince: null, goodSince: null, leftAt: now };
  }
  return { ...auto, goodSince };
}

// What the page does: the hand switch wins; otherwise the automatic decision.
// reason: "manual" | "auto" | null (full video).
export function decide(auto, manual) {
  if (manual) return { mode: "still", reason: "manual" };
  if (auto.mode === "still") return { mode: "still", reason: "auto" };
  return { mode: "video", reason: null };
}

// -- applying -------------------------------------------------------------------------

// How much to scale a camera picture down for stills (long side STILL.longSide).
export function stillScale(width, height) {
  const longSide = Math.max(width || 0, height || 0);
  if (!longSide) return 2;
  return Math.max(1, Math.ceil((longSide / STILL.longSide) * 100) / 100);
}

export const PRIORITY = {
  audio: { priority: "high", networkPriority: "high" },
  video: { priority: "low", networkPriority: "low" },
};

// The parameters one sender should have. kind: "audio" | "video"; params: its
// getParameters(); mode: "video" | "still"; memo: what we keep for this sender
// between calls ({base}: the maxBitrate someone else set, e.g. the recording
// leg's cap, to restore after still mode); size: {width, height} of the track.
// Returns {params, changed, memo}; setParameters is needed only when changed.
export function planSender(kind, params, mode, memo = {}, size = {}) {
  const encodings = params.encodings || [];
  if (!encodings.length) return { params, changed: false, memo };
  let changed = false;
  const next = { ...memo };
  const set = (target, key, value) => {
    if (value === undefined) {
      if (key in target && target[key] !== undefined) {
        delete target[key];
        changed = true;
      }
    } else if (target[key] !== value) {
      target[key] = value;
      changed = true;
    }
  };
  const out = { ...params, encodings: encodings.map((e) => ({ ...e })) };
  for (const e of out.encodings) {
    set(e, "priority", PRIORITY[kind].priority);
    set(e, "networkPriority", PRIORITY[kind].networkPriority);
  }
  if (kind !== "video") return { params: out, changed, memo: next };

  if (mode === "still") {
    const first = out.encodings[0];
    // Someone else's cap (not ours): keep it, and stay under it.
    if (next.applied !== "still" || first.maxBitrate !== next.stillBitrate) next.base = first.maxBitrate;
    const cap = next.base === undefined ? STILL.maxBitrate : Math.min(STILL.maxBitrate, next.base);
    const scale = stillScale(size.width, size.height);
    for (const e of out.encodings) {
      set(e, "maxFramerate", STILL.maxFramerate);
      set(e, "maxBitrate", cap);
      set(e, "scaleResolutionDownBy", scale);
    }
    set(out, "degradationPreference", "maintain-resolution");
    next.applied = "still";
    next.stillBitrate = cap;
  } else {
    if (next.applied === "still") {
      for (const e of out.encodings) {
        set(e, "maxFramerate", undefined);
        set(e, "maxBitrate", next.base);
        set(e, "scaleResolutionDownBy", 1);
      }
    }
    // Unset is the browser's default, "balanced": a fresh sender is left as it
    // is (a change once the call is up reconfigures Chromium's encoder, which
    // then skips camera frames), one back from stills is set back.
    if (next.applied === "still" || out.degradationPreference !== undefined) {
      set(out, "degradationPreference", "balanced");
    }
    next.applied = "video";
    delete next.stillBitrate;
  }
  return { params: out, changed, memo: next };
}

// -- showing --------------------------------------------------------------------------

// 0-4 bars for the uplink (0: not measured yet).
export function uplinkLevel(sample) {
  if (!sample || (sample.sentKbps === null && sample.rttMs === null)) return 0;
  const loss = sample.lossPct || 0;
  const rtt = sample.rttMs || 0;
  const avail = sample.availableKbps;
  if (isBad(sample) || loss >= 10 || rtt >= 600) return 1;
  if ((avail !== null && avail < EXIT_KBPS) || loss >= 5 || rtt >= 300) return 2;
  if ((avail !== null && avail < 600) || loss >= 2 || rtt >= 150) return 3;
  return 4;
}

// "x,y x,y ..." for an SVG polyline in a width x height box; grows in from the right.
export function sparkPoints(values, width = 60, height = 18, slotsMin = 10) {
  if (values.length < 2) return "";
  const max = Math.max(...values, 1) * 1.3;
  const slots = Math.max(values.length, slotsMin);
  const step = width / (slots - 1);
  const offset = (slots - values.length) * step;
  return values
    .map((v, i) => `${(offset + i * step).toFixed(1)},${(height - 1 - (v / max) * (height - 2)).toFixed(1)}`)
    .join(" ");
}

// An SVG path of one thin column per value at the same places as sparkPoints
// (for the loss history: `full` % reaches the top).
export function columnsPath(values, width = 60, height = 18, full = 20, slotsMin = 10) {
  if (!values.length) return "";
  const slots = Math.max(values.length, slotsMin);
  const step = width / (slots - 1);
  const offset = (slots - values.length) * step;
  return values
    .map((v, i) => {
      if (!v) return "";
      const top = height - Math.max(1, (Math.min(v, full) / full) * height);
      return `M${(offset + i * step).toFixed(1)},${height}V${top.toFixed(1)}`;
    })
    .join("");
}

