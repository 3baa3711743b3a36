// How a kept pre-call check reads, on the check page and the consultation page:
// the verdict, each reason in words, and the figures behind them. The verdict
// and its reasons are the server's (signaling/workflow/precall_verdict.py).

import { LOCALE, el, t } from "./ui.js";

const one = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });

export const fmt = {
  mbit: (kbps) => (kbps == null ? "–" : `${one.format(kbps / 1000)} Mbit/s`),
  percent: (value) => (value == null ? "–" : `${one.format(value)} %`),
  ms: (value) => (value == null ? "–" : `${whole.format(value)} ms`),
  fps: (value) => (value == null ? "–" : one.format(value)),
};

export function verdictBadge(verdict) {
  return el("span", {
    class: `badge pc-badge pc-${verdict}`,
    dataset: { verdict },
    text: t(`precall.verdict.${verdict}`),
  });
}

export function reasonText(reason) {
  const params = { ...reason };
  if (reason.code === "camera_poor") params.fps = fmt.fps(reason.frame_rate);
  if (reason.percent != null) params.percent = fmt.percent(reason.percent);
  if (reason.mbit != null) params.mbit = one.format(reason.mbit);
  if (reason.path) params.path = t(`precall.path.${reason.path}`);
  return t(`precall.reason.${reason.code}`, params);
}

export function reasonList(reasons) {
  return (reasons || []).map((r) =>
    el("li", { class: `pc-reason pc-${r.verdict}`, dataset: { code: r.code }, text: reasonText(r) }),
  );
}

function cameraText(camera) {
  if (!camera || camera.status !== "ok") {
    return t(`precall.device.${(camera && camera.status) || "failed"}`);
  }
  return t("precall.camera.value", {
    width: camera.width ?? "–",
    height: camera.height ?? "–",
    fps: fmt.fps(camera.frame_rate),
  });
}

// The figures of a kept check as a definition list.
export function figures(report) {
  const best = (report.paths || []).find((p) => p.name === report.best_path);
  const network = best
    ? `${t(`precall.path.${best.name}`)} · ${t("precall.fig.uplink")} ${fmt.mbit(best.uplink_kbps)} · ${t("precall.fig.loss")} ${fmt.percent(best.loss_percent)} · ${t("precall.fig.rtt")} ${fmt.ms(best.rtt_ms)}`
    : t("precall.path.status.failed");
  const rows = [
    ["camera", cameraText(report.camera)],
    ["microphone", t(`precall.device.${report.microphone ? report.microphone.status : "failed"}`)],
    ["speaker", t(`precall.speaker.${report.speaker}`)],
    ["network", network],
  ];
  return el(
    "dl",
    { class: "facts pc-figures" },
    rows.flatMap(([key, value]) => [
      el("dt", { text: t(`precall.fig.${key}`) }),
      el("dd", { dataset: { figure: key }, text: value }),
    ]),
  );
}
