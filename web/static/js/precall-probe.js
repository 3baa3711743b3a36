// One network probe of the pre-call check (see media/probe.py for the server's
// side): an RTCPeerConnection to the server with an unordered, never
// retransmitted data channel for a second of small pings (the round trip), and
// a video sender that then sends a drawn moving picture for a few seconds
// (not the camera: a still room would leave the encoder little to send, and
// the estimate would stop at what it sent). The uplink is what the browser's
// own congestion controller finds the path carries for video
// (availableOutgoingBitrate), the loss what the server's receiver reports say
// was lost on the way (nothing is resent): the figures a call will meet. Paced
// data channel packets measured neither the uplink nor the loss of a lossy
// link (SCTP backs off at every loss, as TCP does).

import { post } from "./api.js";

const HEADER = 12; // seq uint32, send time float64 (ms)
const PINGS = 10;
const PING_GAP_MS = 100;
const POLL_MS = 250;
// The estimate is read over the probe's last seconds (its start is a climb).
const SETTLED_MS = 2000;
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

// The picture the probe sends: 640x480 of 4-pixel blocks of noise, new every
// frame, so that the encoder always has more to send than the path carries.
function drawnTrack() {
  const canvas = document.createElement("canvas");
  canvas.width = 640;
  canvas.height = 480;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const noise = document.createElement("canvas");
  noise.width = 160;
  noise.height = 120;
  const noiseCtx = noise.getContext("2d");
  const image = noiseCtx.createImageData(noise.width, noise.height);
  const draw = () => {
    const data = image.data;
    for (let at = 0; at < data.length; at += 65536) {
      crypto.getRandomValues(data.subarray(at, Math.min(at + 65536, data.length)));
    }
    for (let at = 3; at < data.length; at += 4) data[at] = 255; // opaque
    noiseCtx.putImageData(image, 0, 0);
    ctx.drawImage(noise, 0, 0, canvas.width, canvas.height);
  };
  draw();
  const [track] = canvas.captureStream(24).getVideoTracks();
  const timer = setInterval(draw, 42);
  return { track, stop: () => (clearInterval(timer), track.stop()) };
}

// The video sender's figures now: the controller's estimate, and when the
// server's last receiver report came with the fraction it lost.
async function videoStats(pc) {
  const report = await pc.getStats();
  const out = { estimate: null, report: null, fractionLost: null, rtt: null };
  let pairId = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  report.forEach((s) => {
    if (s.type === "candidate-pair" && s.id === pairId && s.availableOutgoingBitrate)
      out.estimate = s.availableOutgoingBitrate;
    if (s.type === "remote-inbound-rtp" && s.kind === "video") {
      out.report = s.timestamp; // when the last report came (Chromium has no count)
      out.fractionLost = s.fractionLost ?? null;
      out.rtt = s.roundTripTime ?? null; // seconds, from the report's timestamps
    }
  });
  return out;
}

// Probe one path: {name, status, uplink_kbps, loss_percent, rtt_ms, via}.
export async function probePath(consultationId, path, plan, onProgress = () => {}) {
  if (!path.configured) return { name: path.name, status: "not_configured" };
  const pc = new RTCPeerConnection({
    iceServers: path.ice_servers,
    iceTransportPolicy: path.policy,
  });
  const failed = { name: path.name, status: "failed" };
  let drawn = null;
  try {
    const channel = pc.createDataChannel("probe", { ordered: false, maxRetransmits: 0 });
    channel.binaryType = "arraybuffer";
    // Sends nothing until the round trip is measured on an idle path.
    const video = pc.addTransceiver("video", {
      direction: "sendonly",
      sendEncodings: [{ maxBitrate: plan.kbps * 1000 }],
    });
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
    channel.addEventListener("message", (event) => {
      if (!(event.data instanceof ArrayBuffer) || event.data.byteLength < 20) return;
      const view = new DataView(event.data);
      const seq = view.getUint32(0);
      if (seq < PINGS) rtts.push(performance.now() - view.getFloat64(4));
    });
    // The round trip, on an idle path.
    for (let seq = 0; seq < PINGS; seq++) {
      const buffer = new ArrayBuffer(HEADER + 20);
      const view = new DataView(buffer);
      view.setUint32(0, seq);
      view.setFloat64(4, performance.now());
      channel.send(buffer);
      await sleep(PING_GAP_MS);
    }
    // The uplink and the loss, as video meets them.
    drawn = drawnTrack();
    await video.sender.replaceTrack(drawn.track);
    const start = performance.now();
    const end = start + plan.seconds * 1000;
    const estimates = [];
    const losses = [];
    let report = null;
    let reports = 0;
    while (performance.now() < end) {
      await sleep(POLL_MS);
      const now = performance.now();
      const stats = await videoStats(pc);
      if (stats.estimate && now > end - SETTLED_MS) estimates.push(stats.estimate);
      if (stats.report !== null && stats.report !== report) {
        // Each report's fraction covers the packets since the one before; the
        // first covers the start.
        if (reports > 0 && stats.fractionLost !== null) losses.push(stats.fractionLost);
        if (stats.rtt !== null) rtts.push(stats.rtt * 1000);
        report = stats.report;
        reports += 1;
      }
      onProgress((now - start) / (end - start));
    }
    if (!estimates.length) return failed; // no video went: the path does not carry it
    const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
    const uplink = Math.min(mean(estimates), plan.kbps * 1000) / 1000;
    return {
      name: path.name,
      status: "ok",
      uplink_kbps: Math.round(uplink * 10) / 10,
      loss_percent: losses.length ? Math.round(mean(losses) * 1000) / 10 : null,
      // The shortest, of the pings and of the receiver reports: the path's own
      // round trip is what the verdict judges. On a 300 ms link with 10 %
      // loss the pings alone read 403-867 ms (their median) and 612 ms (the
      // shortest) in most checks: the channel's SCTP held them (a lost packet
      // of its own waits for a resend).
      rtt_ms: rtts.length ? Math.round(Math.min(...rtts) * 10) / 10 : null,
      via: await selectedPath(pc),
    };
  } catch (err) {
    if (err && err.status) throw err; // the API refused (session, rights): not a network fault
    return failed;
  } finally {
    if (drawn) drawn.stop();
    pc.close();
  }
}
