// Connection quality towards one peer, from RTCPeerConnection.getStats():
// round-trip time of the selected candidate pair (Firefox has none there: then
// the RTCP round-trip time of what we send, remote-inbound-rtp), packet loss and bitrate of
// what we receive (deltas between two samples), and whether the pair is relayed
// through TURN. Turned into 0-4 signal bars and a bitrate history for a
// sparkline.

const HISTORY = 30;

export function selectedPair(report) {
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  let pair = null;
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = byId.get(s.selectedCandidatePairId) || null;
    }
  }
  if (!pair) {
    for (const s of byId.values()) {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    }
  }
  if (!pair) return null;
  return {
    pair,
    local: byId.get(pair.localCandidateId) || null,
    remote: byId.get(pair.remoteCandidateId) || null,
  };
}

// 4: good, 3-2: fair, 1: poor, 0: not measured yet.
export function level(sample) {
  if (!sample || sample.rttMs === null) return 0;
  const { rttMs, lossPct } = sample;
  if (rttMs < 150 && lossPct < 1) return 4;
  if (rttMs < 300 && lossPct < 3) return 3;
  if (rttMs < 500 && lossPct < 8) return 2;
  return 1;
}

// Seconds: the selected pair's STUN round trip, else the largest RTCP one.
export function roundTrip(selected, rtcpRtts) {
  const pairRtt = selected && selected.pair.currentRoundTripTime;
  if (typeof pairRtt === "number") return pairRtt;
  return rtcpRtts.length ? Math.max(...rtcpRtts) : null;
}

export class QualityMeter {
  constructor() {
    this.previous = null;
    this.history = [];
    this.last = null;
  }

  async sample(pc) {
    const report = await pc.getStats();
    const selected = selectedPair(report);
    let bytes = 0;
    let lost = 0;
    let received = 0;
    const rtcpRtts = [];
    report.forEach((s) => {
      if (s.type === "remote-inbound-rtp" && typeof s.roundTripTime === "number") {
        rtcpRtts.push(s.roundTripTime);
      }
      if (s.type !== "inbound-rtp") return;
      bytes += s.bytesReceived || 0;
      lost += Math.max(0, s.packetsLost || 0);
      received += s.packetsReceived || 0;
    });
    const now = performance.now();
    const prev = this.previous;
    let kbps = null;
    let lossPct = 0;
    if (prev) {
      const seconds = (now - prev.at) / 1000;
      if (seconds > 0) kbps = Math.max(0, ((bytes - prev.bytes) * 8) / 1000 / seconds);
      const dLost = lost - prev.lost;
      const dReceived = received - prev.received;
      lossPct = dLost + dReceived > 0 ? (100 * Math.max(0, dLost)) / (dLost + dReceived) : 0;
    } else if (lost + received > 0) {
      lossPct = (100 * lost) / (lost + received);
    }
    this.previous = { at: now, bytes, lost, received };
    if (kbps !== null) {
      this.history.push(kbps);
      if (this.history.length > HISTORY) this.history.shift();
    }
    const rtt = roundTrip(selected, rtcpRtts);
    const relayed = Boolean(
      selected &&
        ((selected.local && selected.local.candidateType === "relay") ||
          (selected.remote && selected.remote.candidateType === "relay")),
    );
    this.last = {
      rttMs: typeof rtt === "number" ? rtt * 1000 : null,
      lossPct,
      kbps,
      relayed,
      connected: Boolean(selected),
    };
    this.last.level = level(this.last);
    return this.last;
  }

  // "x,y x,y ..." for an SVG polyline in a width x height box.
  sparkline(width = 60, height = 18) {
    const values = this.history;
    if (values.length < 2) return "";
    // Headroom above the peak, so a steady bitrate is a line, not the top edge.
    const max = Math.max(...values, 1) * 1.3;
    // Grows in from the right; a short history is drawn over at least a third.
    const slots = Math.max(values.length, 10);
    const step = width / (slots - 1);
    const offset = (slots - values.length) * step;
    return values
      .map((v, i) => {
        const x = offset + i * step;
        const y = height - 1 - (v / max) * (height - 2);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .join(" ");
  }
}
