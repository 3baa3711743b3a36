// The recording leg: a second, send-only RTCPeerConnection from this page to
// the server's recorder, carrying the same microphone and camera tracks at a
// capped bitrate, so that a weak uplink gives the live call priority. The server
// answers it (rec_offer -> rec_answer) and writes the encoded frames to disk.
//
// If it fails, the live call goes on; every participant sees who is being
// recorded through the `recording` messages the server sends to the room.
//
// The leg keeps itself open while the page wants it (want() until stop()):
// after a join in which the server does not list us as recorded (a server
// restart, a place that lapsed), when its connection fails or closes, when the
// server refuses the offer or says the leg ended (`recording` interrupted or
// failed: a full disk, a dead connection), it opens a new one, after a backoff
// that grows from RETRY_MS to RETRY_MAX_MS and falls back once a leg has stayed
// up for STABLE_MS.

import { PRIORITY } from "./uplink-policy.js";

const GATHER_MS = 3000;
const RETRY_MS = 1000;
const RETRY_MAX_MS = 30000;
const STABLE_MS = 10000;
// When the page no longer wants its leg, the connection stays open, sending
// nothing new, until the server closes it (it asks again for what it still
// misses of the last frames: media/leg.py Leg.drain) or this long has passed.
const DRAIN_MS = 15000;
// When this page ends the call or leaves it, the server is told once the
// camera's frames until then have gone through the leg's encoder: once it has
// encoded as many more frames as the camera was ahead of it (at most
// FLUSH_BEHIND: what is more is frames it dropped earlier in the call) and
// FLUSH_AFTER frames the camera gave after, read every FLUSH_STEP_MS, for at
// most FLUSH_MS.
const FLUSH_MS = 1000;
const FLUSH_BEHIND = 8;
const FLUSH_AFTER = 2;
const FLUSH_STEP_MS = 30;

export class RecordingLeg {
  constructor({ signaling, onChange }) {
    this.signaling = signaling;
    this.onChange = onChange; // (state) => void; state: off | starting | recording | failed
    this.pc = null;
    this.answered = false; // the server answered the offer of this.pc
    this.state = "off";
    this.maxBitrate = 500000;
    this.params = null; // {config, tracks, maxBitrate} while the page wants a leg
    this.retryMs = RETRY_MS;
    this.retryTimer = null;
    this.stableTimer = null;
    this.videoSender = null; // the leg's video sender (its camera attached once connected)
  }

  set(state) {
    this.state = state;
    this.onChange(state);
  }

  // The page wants its leg, with these tracks. restart: the server has no leg
  // for us (it did not list us when we joined), so an old connection, however
  // it looks from here, leads nowhere and is replaced.
  want(params, { restart = false } = {}) {
    this.params = params;
    const pc = this.pc;
    const alive = pc && ["new", "connecting", "connected"].includes(pc.connectionState);
    if (alive && !restart) return;
    this.open();
  }

  async open() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (!this.params) return;
    const { config, tracks, maxBitrate } = this.params;
    this.close();
    const live = tracks.filter(Boolean);
    if (!live.length) {
      this.set("failed");
      return;
    }
    this.maxBitrate = maxBitrate || this.maxBitrate;
    this.set("starting");
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    this.answered = false;
    try {
      // Each sender is made with its cap and priority (uplink-policy.js), so
      // nothing changes once the call is up: a change then (the encoder or its
      // adaptation reconfigured) came right after the first keyframe on a fast
      // link, and 1-2 camera frames were never encoded (README, the leg's start).
      //
      // The camera comes to its sender once the connection is up (connected()).
      // Chromium sizes the VP8 encoder's buffer from the bitrate it starts at,
      // which is 300 kbit/s until the transport's first estimate, the answer's
      // start bitrate (800), comes. A camera frame that came first started it at
      // 300; when the target rose to 1.25 Mbit/s right after the first
      // keyframe, libvpx dropped the next 1-2 frames (README, the leg's start).
      this.videoSender = null;
      for (const track of live) {
        const encoding = { ...PRIORITY[track.kind] };
        const init = { direction: "sendonly", sendEncodings: [encoding] };
        if (track.kind === "video") {
          encoding.maxBitrate = this.maxBitrate;
          const transceiver = pc.addTransceiver("video", init);
          preferStorableCodecs(transceiver);
          this.videoSender = transceiver.sender;
        } else pc.addTransceiver(track, init);
      }
      pc.addEventListener("connectionstatechange", () => {
        if (pc !== this.pc) return;
        if (pc.connectionState === "connected") this.connected();
        if (["failed", "closed"].includes(pc.connectionState)) this.failed();
      });
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      if (pc !== this.pc) return;
      if (!this.signaling.send({ type: "rec_offer", sdp: pc.localDescription.sdp })) {
        // Not joined: the next join asks for the leg again.
        this.set("failed");
      }
    } catch (error) {
      console.warn("recording leg", error);
      if (pc === this.pc) this.failed();
    }
  }

  connected() {
    this.set("recording");
    this.attachCamera();
    // A leg that stays up resets the backoff; one that keeps dying (a full
    // disk) does not make the page hammer the server.
    clearTimeout(this.stableTimer);
    this.stableTimer = setTimeout(() => {
      this.retryMs = RETRY_MS;
    }, STABLE_MS);
  }

  // The camera to its sender, once the connection is up (open()); a camera
  // switched meanwhile (replace()) is the one attached.
  attachCamera() {
    const sender = this.videoSender;
    const track = this.params?.tracks.find((t) => t && t.kind === "video");
    if (!sender || sender.track || !track || !this.pc) return;
    sender.replaceTrack(track).catch((error) => console.warn("recording camera", error));
  }

  async answer(sdp) {
    const pc = this.pc;
    if (!pc) return;
    this.answered = true;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp });
    } catch (error) {
      console.warn("recording answer", error);
      if (pc === this.pc) this.failed();
    }
  }

  // The server says our leg is not recording (it ended, or it refused the
  // offer). Ignored while an offer of ours waits for its answer: the server
  // ends an old leg of ours before it answers the new one. Once answered, it
  // is about the new leg (its file failed at once: a full disk), even before
  // the connection is up.
  ended() {
    if (this.state === "starting" && this.pc && !this.answered) return;
    this.failed();
  }

  // A camera switched on or off (audio-only mode): the leg follows.
  async replace(kind, track) {
    if (this.params) {
      const tracks = this.params.tracks.filter((t) => t && t.kind !== kind);
      this.params = { ...this.params, tracks: track ? [...tracks, track] : tracks };
    }
    if (!this.pc) return;
    // Not attached yet: attachCamera() attaches this one once connected.
    const waiting = this.videoSender && !this.videoSender.track;
    if (kind === "video" && waiting && this.pc.connectionState !== "connected") return;
    for (const sender of this.pc.getSenders()) {
      if ((sender.track && sender.track.kind === kind) || (!sender.track && kind === "video")) {
        await sender.replaceTrack(track);
      }
    }
  }

  // The leg is gone or refused: say so, and open a new one later while wanted.
  failed() {
    this.close();
    this.set("failed");
    clearTimeout(this.stableTimer);
    if (!this.params || this.retryTimer) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.params && this.signaling.joined) this.open();
    }, delay);
  }

  close() {
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.close();
    }
  }

  // This page ends the call or leaves it: the caller tells the server once
  // the frames the camera gave until now are encoded, and two more (by then
  // the pacer has sent the earlier ones' packets), so that the server's file
  // ends where the call ended for this page's doctor, not a frame or two
  // before. When "end" reached the server, the frames still in
  // the browser's pipeline (a few on a busy PC) were not the call's any more
  // (media/leg.py Leg.drain keeps only what was sent before). The leg keeps
  // its camera meanwhile: the others see no frozen picture, and the frames
  // after this are the call's end, recorded too.
  async flush() {
    const pc = this.pc;
    if (!pc || pc.connectionState !== "connected" || !this.videoSender?.track) return;
    const until = performance.now() + FLUSH_MS;
    const start = await videoCounts(pc);
    if (!start) return;
    const behind = Math.min(Math.max(start.camera - start.encoded, 0), FLUSH_BEHIND);
    const enough = start.encoded + behind + FLUSH_AFTER;
    while (performance.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, FLUSH_STEP_MS));
      const now = await videoCounts(pc);
      if (!now || now.encoded >= enough) return;
    }
  }

  // The page no longer wants a leg (the call is over for it); tell: ask the
  // server to finish the file now (it does so anyway when we leave or end).
  stop(tell = true) {
    this.params = null;
    clearTimeout(this.retryTimer);
    clearTimeout(this.stableTimer);
    this.retryTimer = null;
    const had = Boolean(this.pc);
    if (tell && had) this.signaling.send({ type: "rec_stop" });
    this.drain();
    this.set("off");
  }

  // Let go of the connection the way a call ends: no new media, but the last
  // frames' lost packets can still be resent until the server closes it.
  drain() {
    const pc = this.pc;
    if (!pc) return;
    this.pc = null;
    if (pc.connectionState !== "connected") {
      pc.close();
      return;
    }
    const senders = pc.getSenders();
    for (const sender of senders) sender.replaceTrack(null).catch(() => {});
    const transport = senders.map((s) => s.transport).find(Boolean);
    const close = () => {
      clearTimeout(timer);
      if (pc.signalingState !== "closed") pc.close();
    };
    const timer = setTimeout(close, DRAIN_MS);
    transport?.addEventListener("statechange", () => {
      if (["closed", "failed"].includes(transport.state)) close();
    });
    pc.addEventListener("connectionstatechange", () => {
      if (["failed", "closed", "disconnected"].includes(pc.connectionState)) close();
    });
  }
}

// The leg's camera frames (the video sender's media source) and frames
// encoded (libwebrtc's framesSent is the same count); null once the connection
// is closed or has no camera.
async function videoCounts(pc) {
  let camera = null;
  let encoded = 0;
  try {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "media-source" && s.kind === "video") camera = s.frames || 0;
      if (s.type === "outbound-rtp" && s.kind === "video") encoded += s.framesEncoded || 0;
    });
  } catch (error) {
    return null; // closed meanwhile
  }
  return camera === null ? null : { camera, encoded };
}

// The recorder stores VP8 (WebM) or H.264 (MP4): prefer those (and their RTX),
// never simulcast here. RED and ULPFEC stay: the recorder rebuilds a packet lost
// on the uplink from them without waiting a round trip for it (media/ulpfec.py). The spec checks the list against what this browser can
// *receive* (RTCRtpReceiver.getCapabilities), and a mismatch throws: then the
// browser's own order stands and the recorder refuses what it cannot store.
function preferStorableCodecs(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  try {
    const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
    const rank = (c) => (/vp8/i.test(c.mimeType) ? 0 : /h264/i.test(c.mimeType) ? 1 : 2);
    const wanted = codecs.filter((c) => rank(c) < 2 || /rtx|red|ulpfec/i.test(c.mimeType)).sort((a, b) => rank(a) - rank(b));
    if (wanted.some((c) => rank(c) < 2)) transceiver.setCodecPreferences(wanted);
  } catch (error) {
    console.warn("recording codec preferences", error);
  }
}

// Wait until ICE gathering is complete (loopback and LAN: at once), at most
// GATHER_MS: the recorder does not need trickle for a server with known addresses.
export function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_MS);
  });
}
