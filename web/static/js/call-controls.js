// The call page around the tiles: the local preview and its flags, the control
// buttons (mute, camera, audio-only, leave, end), the device notice, the state
// banner, the recording indicator and what is offered once the call is over.
// render(state) shows call-state.js's state; the buttons call the page's
// handlers (onMic, onCam, onAudioOnly, onLeave, onEnd; "end" after the dialog).

import { $, ask, t } from "./ui.js";
import { bannerView, mediaState, pageState, recordingReason, recordingView } from "./call-state.js";

function setToggle(button, pressed, label) {
  button.setAttribute("aria-pressed", pressed ? "true" : "false");
  button.querySelector(".ctl-label").textContent = label;
}

export class Controls {
  constructor({ onMic, onCam, onAudioOnly, onLeave, onEnd }) {
    this.root = $("call");
    this.banner = $("call-banner");
    this.notice = $("media-notice");
    this.rec = $("rec-indicator");
    this.localTile = $("local-tile");
    this.localVideo = $("local-video");
    this.mic = $("ctl-mic");
    this.cam = $("ctl-cam");
    this.audioOnly = $("ctl-audio-only");
    this.switching = false; // audio-only being switched: its button waits
    this.mic.addEventListener("click", onMic);
    this.cam.addEventListener("click", onCam);
    this.audioOnly.addEventListener("click", async () => {
      this.switching = true;
      this.audioOnly.disabled = true;
      try {
        await onAudioOnly();
      } finally {
        this.switching = false;
      }
    });
    $("ctl-leave").addEventListener("click", onLeave);
    const endDialog = $("end-dialog");
    $("ctl-end").addEventListener("click", async () => {
      if ((await ask(endDialog)) === "end") onEnd();
    });
  }

  // The local camera's picture (null: none) and our initial as its placeholder.
  showLocal(video, name) {
    this.localVideo.srcObject = video ? new MediaStream([video]) : null;
    if (name !== undefined) $("local-avatar").textContent = (name || "?").slice(0, 1);
  }

  render(state) {
    const m = state.media;
    const finished = Boolean(state.finished);
    const sending = mediaState(state);
    this.localTile.dataset.video = sending.video ? "on" : "off";
    this.localTile.querySelector(".flag-mic").hidden = sending.audio;
    this.localTile.querySelector(".flag-cam").hidden = sending.video;
    this.mic.disabled = !m.audio || finished;
    this.cam.disabled = !m.video || m.audioOnly || finished;
    this.audioOnly.disabled = this.switching || finished || (!m.video && !m.audioOnly);
    setToggle(this.mic, !m.micOn, m.micOn ? t("call.mic.on") : t("call.mic.off"));
    setToggle(this.cam, !m.camOn, m.camOn ? t("call.camera.on") : t("call.camera.off"));
    setToggle(this.audioOnly, m.audioOnly, m.audioOnly ? t("call.audio_only.off") : t("call.audio_only.on"));
    this.root.dataset.audioOnly = m.audioOnly ? "true" : "false";

    const text = m.problems.map((p) => t(`call.media.${p}`)).join(" ");
    this.notice.textContent = text;
    this.notice.hidden = !text;
    this.notice.dataset.problems = m.problems.join(" ");

    const banner = bannerView(state);
    this.banner.dataset.kind = banner.kind;
    this.banner.textContent = t(banner.key);
    this.root.dataset.state = pageState(state);

    // Nothing to say about recording before the server has told us (first join).
    if (state.myId) this.renderRecording(state);
    if (finished) this.renderAfter(state.finished);
  }

  renderRecording(state) {
    const view = recordingView(state);
    const reason = recordingReason(state);
    this.rec.dataset.state = view.state;
    this.rec.dataset.peers = String(view.peers);
    this.rec.dataset.reason = reason || "";
    // Why it stopped, when the server said (a full disk): the call goes on.
    let text = t(reason ? `call.rec.${reason}` : `call.rec.${view.state}`);
    if (view.others && view.state !== "not_consented") {
      text += ` · ${t("call.rec.others", { count: view.others })}`;
    }
    this.rec.querySelector(".rec-text").textContent = text;
  }

  // The call is over: back to the list, rejoin (after leaving) or the opinion.
  renderAfter(kind) {
    this.root.dataset.finished = kind;
    $("call-after").hidden = false;
    $("write-opinion").hidden = kind !== "ended";
    const rejoin = $("rejoin");
    rejoin.hidden = kind !== "left";
    rejoin.href = location.pathname;
  }
}
