// One RTCPeerConnection per remote participant (the call is a mesh), negotiated
// with the "perfect negotiation" pattern: either side may offer at any time
// (a newcomer, an ICE restart after a reconnect, audio-only mode), and when both
// offer at once the impolite side ignores the other's offer while the polite
// side rolls its own back. Which side is polite follows from comparing the two
// peer ids, so both agree without talking about it.
//
// Candidates are trickled through signaling; the server drops the ones outside
// the allowed networks. The ICE servers and the transport policy are always the
// ones the server handed out in `joined` (a bare RTCPeerConnection would use
// none, and relay-only deployments depend on the policy).

import { PRIORITY } from "./uplink-policy.js";

// A connection that has not come up for this long is nudged (see checkStuck),
// then again after twice as long, up to a minute.
const STUCK_MS = 8000;
const STUCK_MAX_MS = 60000;
const STUCK_CHECK_MS = 2000;
// What the connection went through, newest last (for a failed browser test to
// say why a connection stayed down): this many entries are kept.
const HISTORY_SIZE = 40;

export class Peer {
  // initiator: we offer first (we are the newcomer, or the peer has no
  // connection to us). local() returns {audio, video, videoDirection}: the tracks
  // we send now and "sendrecv" or "inactive" (audio-only mode).
  // onBroken(type, sdp): a remote description that does not fit this connection
  // (a new page of the same person, after a server restart) failed on one that
  // had a remote side already: the page replaces the connection.
  constructor({ peerId, myId, config, initiator, local, signaling, onTrack, onStateChange, onBroken }) {
    this.peerId = peerId;
    this.local = local;
    this.polite = myId < peerId;
    this.signaling = signaling;
    this.onTrack = onTrack;
    this.onStateChange = onStateChange;
    this.onBroken = onBroken || (() => {});
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingAnswer = false;
    this.closed = false;
    this.stream = new MediaStream();
    this.pc = new RTCPeerConnection(config);
    this.history = [];
    this.candidates = { sent: 0, received: 0, refused: 0 };
    const pc = this.pc;

    pc.addEventListener("track", ({ track }) => {
      if (!this.stream.getTracks().includes(track)) this.stream.addTrack(track);
      track.addEventListener("unmute", () => this.onTrack(this));
      this.onTrack(this);
    });
    pc.addEventListener("icecandidate", ({ candidate }) => {
      // The end-of-candidates marker is not sent: trickle works without it.
      if (!candidate || !candidate.candidate) return;
      this.candidates.sent += 1;
      this.signaling.send({
        type: "candidate",
        to: this.peerId,
        candidate: candidate.candidate,
        sdp_mid: candidate.sdpMid,
        sdp_mline_index: candidate.sdpMLineIndex,
      });
    });
    pc.addEventListener("negotiationneeded", () => this.offer());
    pc.addEventListener("connectionstatechange", () => {
      this.note(`connection ${pc.connectionState}`);
      if (pc.connectionState === "failed" && !this.closed) pc.restartIce();
      this.onStateChange(this);
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      this.note(`ice ${pc.iceConnectionState}`);
      this.onStateChange(this);
    });
    this.stuckSince = performance.now();
    this.stuckAfter = STUCK_MS;
    this.stuckTimer = setInterval(() => this.checkStuck(), STUCK_CHECK_MS);

    // One audio and one video transceiver, whatever the local devices: without
    // a camera (denied, missing, audio-only) the video m-line stays and the
    // others' video is still received. The side that answers first does not make
    // its own (they would not match the offer's m-lines, which only addTrack's
    // do): it adopts the ones the offer creates (see adopt).
    this.audio = null;
    this.video = null;
    if (initiator) {
      const { audio, video, videoDirection } = this.local();
      this.audio = this.addTransceiver("audio", audio, "sendrecv");
      this.video = this.addTransceiver("video", video, videoDirection);
    }
  }

  // Keep an event in this connection's history ([seconds since page load, what]).
  note(what) {
    this.history.push([Math.round(performance.now()) / 1000, what]);
    if (this.history.length > HISTORY_SIZE) this.history.shift();
  }

  // With its priority from the start (uplink-policy.js), as the recording
  // leg's senders (recording.js): the uplink controller then has nothing to
  // change once the call is up. (The mesh's own start gap is another matter:
  // README, the leg's start.)
  addTransceiver(kind, track, direction) {
    return this.pc.addTransceiver(track || kind, {
      direction,
      streams: track ? [new MediaStream([track])] : [],
      sendEncodings: [{ ...PRIORITY[kind] }],
    });
  }

  // After a remote offer: use its m-lines for what we send, if ours are not
  // part of the session yet (we are answering first, or lost a glare).
  async adopt() {
    const { audio, video, videoDirection } = this.local();
    for (const [kind, track, direction] of [
      ["audio", audio, "sendrecv"],
      ["video", video, videoDirection],
    ]) {
      const mine = this[kind];
      if (mine && mine.mid !== null) continue;
      const theirs = this.pc
        .getTransceivers()
        .find(
          (t) =>
            t !== this.audio &&
            t !== this.video &&
            t.mid !== null &&
            t.receiver.track.kind === kind &&
            t.currentDirection !== "stopped",
        );
      if (!theirs) continue;
      if (mine) mine.stop();
      this[kind] = theirs;
      theirs.direction = direction;
      await theirs.sender.replaceTrack(track || null);
      if (track) theirs.sender.setStreams(new MediaStream([track]));
    }
  }

  async offer(options = {}) {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      if (options.iceRestart) this.pc.restartIce();
      await this.pc.setLocalDescription();
      const description = this.pc.localDescription;
      if (description && description.type === "offer") {
        this.note(options.iceRestart ? "offer sent (ICE restart)" : "offer sent");
        this.signaling.send({ type: "offer", to: this.peerId, sdp: description.sdp });
      }
    } catch (err) {
      console.warn("offer failed", err);
    } finally {
      this.makingOffer = false;
    }
  }

  // A connection that stays down although signaling works lost a message on the
  // way (an offer or answer raced a reconnect): an offer still unanswered is sent
  // again; otherwise an ICE restart renegotiates (perfect negotiation settles a
  // glare if both sides do it at once). A failed connection restarts at once (above).
  checkStuck() {
    if (this.closed) return;
    const pc = this.pc;
    const now = performance.now();
    if (pc.connectionState === "connected") {
      this.stuckSince = null;
      this.stuckAfter = STUCK_MS;
      return;
    }
    if (this.stuckSince === null) this.stuckSince = now;
    if (now - this.stuckSince < this.stuckAfter || !this.signaling.joined) return;
    this.stuckSince = now;
    this.stuckAfter = Math.min(this.stuckAfter * 2, STUCK_MAX_MS);
    const offer = pc.localDescription;
    if (pc.signalingState === "have-local-offer" && offer) {
      this.note("stuck: offer sent again");
      this.signaling.send({ type: "offer", to: this.peerId, sdp: offer.sdp });
    } else {
      this.note("stuck: ICE restart");
      pc.restartIce();
    }
  }

  // An ICE restart towards this peer (after our signaling socket came back).
  restart() {
    if (this.closed) return;
    this.note("ICE restart (signaling back)");
    this.pc.restartIce();
  }

  async description(type, sdp) {
    if (this.closed) return;
    const pc = this.pc;
    // A collision: we are making an offer, or have one out that is not answered.
    const readyForOffer =
      !this.makingOffer && (pc.signalingState === "stable" || this.settingAnswer);
    const collision = type === "offer" && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    this.note(`${type} received${collision ? (this.ignoreOffer ? ", ignored (glare)" : ", glare") : ""}`);
    if (this.ignoreOffer) return;
    const hadRemote = Boolean(pc.currentRemoteDescription);
    try {
      this.settingAnswer = type === "answer";
      await pc.setRemoteDescription({ type, sdp }); // rolls our offer back if needed
      this.settingAnswer = false;
      if (type === "offer") {
        await this.adopt();
        await pc.setLocalDescription();
        this.signaling.send({ type: "answer", to: this.peerId, sdp: pc.localDescription.sdp });
      }
    } catch (err) {
      this.settingAnswer = false;
      this.note(`${type} failed: ${err}`);
      console.warn("remote description failed", err);
      if (hadRemote && !this.closed) this.onBroken(type, sdp);
    }
  }

  async candidate(message) {
    if (this.closed) return;
    this.candidates.received += 1;
    try {
      await this.pc.addIceCandidate({
        candidate: message.candidate,
        sdpMid: message.sdp_mid,
        sdpMLineIndex: message.sdp_mline_index,
      });
    } catch (err) {
      this.candidates.refused += 1;
      // Candidates of an offer we ignored are expected to fail.
      if (!this.ignoreOffer) console.warn("candidate failed", err);
    }
  }

  // Swap what we send (mute is track.enabled; these change the track itself).
  async replace(kind, track) {
    const transceiver = kind === "audio" ? this.audio : this.video;
    if (!transceiver || this.closed) return;
    await transceiver.sender.replaceTrack(track || null);
    if (track) transceiver.sender.setStreams(new MediaStream([track]));
  }

  // Audio-only mode: no video either way (saves a weak link), renegotiated.
  setVideoDirection(direction) {
    if (!this.video || this.closed) return;
    if (this.video.direction !== direction) this.video.direction = direction;
  }

  close() {
    this.closed = true;
    clearInterval(this.stuckTimer);
    this.pc.close();
    for (const track of this.stream.getTracks()) track.stop();
  }
}
