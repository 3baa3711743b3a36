// One participant's camera and microphone as the server relays them to us: a
// receive-only RTCPeerConnection that the server offers (relay_offer) and we
// answer (relay_answer). In a relayed call our own uplink is the recording leg
// (recording.js); the server writes what each page sends and forwards the same
// encoded frames to the others, so a township clinic's uplink carries its
// video once however many people watch.
//
// It stands where a mesh Peer (peer.js) would: the tiles show `stream`, the
// quality meter reads `pc`'s stats, and the calls that make sense only for a
// connection we send on (replace, setVideoDirection, restart) do nothing. A
// new relay_offer for the same participant replaces the link; the server makes
// one when their leg restarts or our socket comes back.

import * as playout from "./playout.js";
import { gathered } from "./recording.js";

export class RelayLink {
  constructor({ peerId, config, signaling, onTrack, onStateChange }) {
    this.peerId = peerId;
    this.signaling = signaling;
    this.closed = false;
    this.stream = new MediaStream();
    this.playout = playout.initial();
    this.pc = new RTCPeerConnection(config);
    this.pc.addEventListener("track", ({ track }) => {
      if (!this.stream.getTracks().includes(track)) this.stream.addTrack(track);
      track.addEventListener("unmute", () => onTrack(this));
      onTrack(this);
    });
    this.pc.addEventListener("connectionstatechange", () => onStateChange(this));
  }

  // Answer the server's offer (with our candidates: it does not trickle).
  async accept(sdp) {
    const pc = this.pc;
    try {
      await pc.setRemoteDescription({ type: "offer", sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      if (this.closed) return;
      this.signaling.send({ type: "relay_answer", source: this.peerId, sdp: pc.localDescription.sdp });
    } catch (error) {
      console.warn("relay link", error);
    }
  }

  // Called with each quality sample: hold the relayed video a little longer
  // when it froze (playout.js). Audio follows it (Chromium keeps lips in sync).
  async tune(now = performance.now()) {
    if (this.closed) return;
    const freezes = playout.freezesIn(await this.pc.getStats());
    const before = this.playout.targetMs;
    this.playout = playout.step(this.playout, freezes, now);
    if (this.playout.targetMs === before) return;
    for (const receiver of this.pc.getReceivers()) {
      if (receiver.track && receiver.track.kind === "video" && "jitterBufferTarget" in receiver) {
        receiver.jitterBufferTarget = this.playout.targetMs;
      }
    }
  }

  replace() {}

  setVideoDirection() {}

  restart() {}

  close() {
    this.closed = true;
    this.pc.close();
    for (const track of this.stream.getTracks()) track.stop();
  }
}
