// One network probe of the pre-call check (see media/probe.py for the server's
// side): an RTCPeerConnection to the server with an unordered, never
// retransmitted data channel; a second of small pings for the round trip, then
// a few seconds of paced packets for the uplink and the loss. Every packet is
// acknowledged with what the server has received so far, so the figures are the
// server's count against ours.

import { post } from "./api.js";

const HEADER = 12; // seq uint32, send time float64 (ms)
const PINGS = 10;
const PING_GAP_MS = 100;
const TICK_MS = 20;
const TAIL_MS = 1000; // after the last packet, for the last acknowledgements
const MAX_BUFFERED = 256 * 1024; // beyond this the page would measure its own queue
const GATHER_MS = 5000;
const OPEN_MS = 10000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_MS); // send what there is
  });
}

function opened(channel, pc) {
  return new Promise((resolve, reject) => {
    if (channel.readyState === "open") return resolve();
    const timer = setTimeout(() => reject(new Error("timeout")), OPEN_MS);
    channel.addEventListener("open", () => {
      clearTimeout(timer);
      resolve();
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") {
        clearTimeout(timer);
        reject(new Error("failed"));
      }
    });
  });
}

function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// The selected candidate pair's local candidate ({type, protocol, relayProtocol}).
async function selectedPath(pc) {
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = byId.get(s.selectedCandidatePairId);
      const local = pair && byId.get(pair.localCandidateId);
      const remote = pair && byId.get(pair.remoteCandidateId);
      if (local) {
        return {
          type: local.candidateType,
          protocol: local.protocol,
          relayProtocol: local.relayProtocol || null,
          address: local.address,
          remoteAddress: remote ? remote.address : null,
        };
      }
    }
  }
  return null;
}

// Probe one path: {name, status, uplink_kbps, loss_percent, rtt_ms, via}.
export async function probePath(consultationId, path, plan, onProgress = () => {}) {
  if (!path.configured) return { name: path.name, status: "not_configured" };
  const pc = new RTCPeerConnection({
    iceServers: path.ice_servers,
    iceTransportPolicy: path.policy,
  });
  const failed = { name: path.name, status: "failed" };
  try {
    const channel = pc.createDataChannel("probe", { ordered: false, maxRetransmits: 0 });
    channel.binaryType = "arraybuffer";
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const { sdp } = await post(
      `/api/consultations/${encodeURIComponent(consultationId)}/precall/probe`,
      { sdp: pc.localDescription.sdp },
    );
    await pc.setRemoteDescription({ type: "answer", sdp });
    try {
      await opened(channel, pc);
    } catch {
      return failed;
    }
    const rtts = [];
    let serverPackets = 0;
    let serverBytes = 0;
    let lastAck = 0;
    channel.addEventListener("message", (event) => {
      if (!(event.data instanceof ArrayBuffer) || event.data.byteLength < 20) return;
      const view = new DataView(event.data);
      const now = performance.now();
      const seq = view.getUint32(0);
      if (seq < PINGS) rtts.push(now - view.getFloat64(4));
      serverPackets = Math.max(serverPackets, view.getUint32(12));
      serverBytes = Math.max(serverBytes, view.getUint32(16));
      lastAck = now;
    });
    let seq = 0;
    let sent = 0;
    const send = (size) => {
      const buffer = new ArrayBuffer(size);
      const view = new DataView(buffer);
      view.setUint32(0, seq++);
      view.setFloat64(4, performance.now());
      channel.send(buffer);
      sent += 1;
    };
    // The round trip, on an idle path.
    for (let i = 0; i < PINGS; i++) {
      send(HEADER + 20);
      await sleep(PING_GAP_MS);
    }
    // The uplink and the loss, at a paced rate.
    const rate = (plan.kbps * 1000) / 8 / plan.packet_bytes; // packets per second
    const start = performance.now();
    const end = start + plan.seconds * 1000;
    let bulk = 0;
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - start) / 1000) * rate);
      while (bulk < due) {
        bulk += 1;
        if (channel.bufferedAmount > MAX_BUFFERED) continue; // not sent: not counted
        send(plan.packet_bytes);
      }
      onProgress((performance.now() - start) / (end - start));
      await sleep(TICK_MS);
    }
    const stopped = performance.now();
    await sleep(TAIL_MS);
    const seconds = Math.max(stopped, lastAck) / 1000 - start / 1000;
    const bulkBytes = Math.max(0, serverBytes - PINGS * (HEADER + 20));
    return {
      name: path.name,
      status: "ok",
      uplink_kbps: Math.round((bulkBytes * 8) / seconds / 100) / 10,
      loss_percent: sent ? Math.round(Math.max(0, 1 - serverPackets / sent) * 1000) / 10 : 0,
      rtt_ms: rtts.length ? Math.round(median(rtts) * 10) / 10 : null,
      via: await selectedPath(pc),
    };
  } catch (err) {
    if (err && err.status) throw err; // the API refused (session, rights): not a network fault
    return failed;
  } finally {
    pc.close();
  }
}
