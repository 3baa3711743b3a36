// The call page's view of its uplink (uplink.js): the indicator in the page's
// head (bars, the sent bitrate as a line with the loss as red columns under it,
// the numbers), the notice while we send stills, and the low-bandwidth control.

import { $, t } from "./ui.js";
import * as policy from "./uplink-policy.js";

function formatKbps(kbps) {
  if (kbps === null || kbps === undefined) return "–";
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbit/s` : `${Math.round(kbps)} kbit/s`;
}

const LEVEL_NAMES = { 4: "good", 3: "fair", 2: "fair", 1: "poor", 0: "unknown" };

// The uplink indicator (#uplink), the notice of still mode (#uplink-notice) and
// the low-bandwidth control (#ctl-low-bandwidth) of call.html.
export class UplinkView {
  constructor({ onSwitch }) {
    this.box = $("uplink");
    this.notice = $("uplink-notice");
    this.button = $("ctl-low-bandwidth");
    this.switching = false;
    this.finished = false;
    this.button.addEventListener("click", async () => {
      const on = this.button.getAttribute("aria-pressed") !== "true";
      this.switching = true;
      this.button.disabled = true;
      try {
        await onSwitch(on);
      } finally {
        this.switching = false;
        this.button.disabled = this.finished;
      }
    });
  }

  // sendsVideo: whether we send a camera picture at all (not in audio-only mode).
  render(uplink, { sendsVideo = true, finished = false } = {}) {
    this.finished = finished;
    const { mode, reason, sample, level, history, lossHistory } = uplink.view();
    const manual = reason === "manual";
    this.button.setAttribute("aria-pressed", manual ? "true" : "false");
    const label = manual ? t("call.low_bandwidth.off") : t("call.low_bandwidth.on");
    this.button.querySelector(".ctl-label").textContent = label;
    this.button.disabled = this.switching || finished;
    this.button.title = t("call.low_bandwidth.hint");

    const still = mode === "still" && sendsVideo && !finished;
    this.notice.hidden = !still;
    this.notice.dataset.reason = still ? reason : "";
    this.notice.textContent = still ? t(`call.uplink.${reason}`) : "";

    this.box.hidden = finished;
    this.box.dataset.level = String(level);
    this.box.dataset.mode = mode;
    this.box.querySelector("polyline").setAttribute("points", policy.sparkPoints(history));
    this.box.querySelector("path.loss").setAttribute("d", policy.columnsPath(lossHistory));
    const s = sample || { sentKbps: null, lossPct: null, rttMs: null };
    const rows = [
      [t("call.uplink.sending"), formatKbps(s.sentKbps), "kbps"],
      [t("call.stat.loss"), s.lossPct === null ? "–" : `${s.lossPct.toFixed(1)} %`, "loss"],
      [t("call.stat.rtt"), s.rttMs === null ? "–" : `${Math.round(s.rttMs)} ms`, "rtt"],
    ];
    for (const [label, value, key] of rows) {
      const dd = this.box.querySelector(`[data-stat="${key}"]`);
      dd.textContent = value;
      dd.previousElementSibling.textContent = label;
    }
    const summary = `${t("call.uplink.title")}: ${t(`call.quality.${LEVEL_NAMES[level]}`)}`;
    this.box.title = [summary, ...rows.map(([label, value]) => `${label}: ${value}`)].join("\n");
    this.box.setAttribute("aria-label", summary);
  }
}
