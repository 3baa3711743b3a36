// The recording leg: a second, send-only RTCPeerConnection from this page to
// the server's recorder, carrying the same microphone and camera tracks at a
// capped bitrate, so that a weak uplink gives the live call priority. The server
// answers it (rec_offer -> rec_answer) and writes the encoded frames to disk.
//
// If it fails, the live call goes on; every participant sees who is being
// recorded through the `recording` messages the server sends to the room.

const GATHER_MS = 3000;

export class RecordingLeg {
  constructor({ signaling, onChange }) {
    this.signaling = signaling;
    this.onChange = onChange; // (state) => void; state: off | starting | recording | failed
    this.pc = null;
    this.state = "off";
    this.maxBitrate = 500000;
  }

  set(state) {
    this.state = state;
    this.onChange(state);
  }

  // Start (or, after a reconnect whose leg died, restart) with the local tracks.
  async start({ config, tracks, maxBitrate }) {
    if (this.pc && ["new", "connecting", "connected"].includes(this.pc.connectionState)) return;
    this.stop(false);
    const live = tracks.filter(Boolean);
    if (!live.length) {
      this.set("failed");
      return;
    }
    this.maxBitrate = maxBitrate || this.maxBitrate;
    this.set("starting");
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    for (const track of live) {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly" });
      if (track.kind === "video" && transceiver.setCodecPreferences) {
        // The recorder stores VP8 (WebM) or H.264 (MP4); never simulcast here.
        const codecs = RTCRtpSender.getCapabilities("video").codecs;
        const rank = (c) => (/vp8/i.test(c.mimeType) ? 0 : /h264/i.test(c.mimeType) ? 1 : 2);
        transceiver.setCodecPreferences(
          codecs.filter((c) => rank(c) < 2 || /rtx/i.test(c.mimeType)).sort((a, b) => rank(a) - rank(b)),
        );
      }
    }
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === "connected") this.set("recording");
      if (pc.connectionState === "failed") this.set("failed");
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      if (pc !== this.pc) return;
      this.signaling.send({ type: "rec_offer", sdp: pc.localDescription.sdp });
    } catch (error) {
      console.warn("recording leg", error);
      this.set("failed");
    }
  }

  async answer(sdp) {
    const pc = this.pc;
    if (!pc) return;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp });
      for (const sender of pc.getSenders()) {
        if (!sender.track || sender.track.kind !== "video") continue;
        const params = sender.getParameters();
        params.encodings = (params.encodings && params.encodings.length ? params.encodings : [{}]).map(
          (e) => ({ ...e, maxBitrate: this.maxBitrate }),
        );
        await sender.setParameters(params);
      }
    } catch (error) {
      console.warn("recording answer", error);
      this.set("failed");
    }
  }

  // A camera switched on or off (audio-only mode): the leg follows.
  async replace(kind, track) {
    if (!this.pc) return;
    for (const sender of this.pc.getSenders()) {
      if ((sender.track && sender.track.kind === kind) || (!sender.track && kind === "video")) {
        await sender.replaceTrack(track);
      }
    }
  }

  failed() {
    this.stop(false);
    this.set("failed");
  }

  stop(tell = true) {
    if (this.pc) {
      this.pc.close();
      this.pc = null;
      if (tell) this.signaling.send({ type: "rec_stop" });
    }
    if (tell) this.set("off");
  }
}

// Wait until ICE gathering is complete (loopback and LAN: at once), at most
// GATHER_MS: the recorder does not need trickle for a server with known addresses.
function gathered(pc) {
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
