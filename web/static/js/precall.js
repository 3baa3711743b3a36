// The pre-call check: camera (preview, the size and frame rate it delivers),
// microphone (a live level meter), speaker (a test tone the user confirms), and
// the network path to this server and its TURN, one probe per path
// (precall-probe.js). The result goes to the server, which judges it and keeps
// it with the consultation; the page shows the server's verdict.
// Tests read window.__precall (the measured paths and the kept check).

import { get, post } from "./api.js";
import { openMedia } from "./devices.js";
import { probePath } from "./precall-probe.js";
import { fmt, reasonList, verdictBadge } from "./precall-view.js";
import { $, PAGE, el, errorMessage, handleAuthLoss, t } from "./ui.js";
import { readManual, writeManual } from "./uplink.js";

const cid = PAGE.consultation_id;
const FPS_SECONDS = 2;
const PATHS = ["direct", "turn_udp", "turn_tcp", "turn_tls"];

const state = { camera: null, microphone: null, speaker: null, paths: null, check: null };
window.__precall = state;

let media = null;
let audioContext = null;
let meterTimer = null;

function step(card, value) {
  $(card).dataset.step = value;
  $(card).querySelector(".pc-step").textContent = t(`precall.step.${value}`);
}

// -- camera and microphone ------------------------------------------------------------

const STATUS = { denied: "denied", missing: "missing", busy: "busy" };

function statusOf(problems, kind) {
  if (problems.includes("busy")) return "busy";
  for (const p of problems) {
    const [who, what] = p.split("_");
    if (who === kind && STATUS[what]) return STATUS[what];
  }
  return "missing";
}

// Frames the camera delivers, counted for a moment on the preview.
function measureFps(video, seconds) {
  return new Promise((resolve) => {
    if (!video.requestVideoFrameCallback) return resolve(null);
    let first = null;
    let last = null;
    let frames = 0;
    const tick = (now, meta) => {
      if (first === null) first = meta.mediaTime;
      else frames += 1;
      last = meta.mediaTime;
      if (last - first < seconds) video.requestVideoFrameCallback(tick);
      else resolve(frames / (last - first));
    };
    video.requestVideoFrameCallback(tick);
    setTimeout(() => resolve(last > first ? frames / (last - first) : 0), (seconds + 3) * 1000);
  });
}

async function checkCamera(track) {
  step("pc-camera", "running");
  if (!track) {
    state.camera = { status: statusOf(media.problems, "camera") };
    $("pc-resolution").textContent = t(`precall.device.${state.camera.status}`);
    $("pc-fps").textContent = "–";
    step("pc-camera", "done");
    return;
  }
  const video = $("pc-video");
  video.srcObject = new MediaStream([track]);
  await video.play().catch(() => {});
  const fps = await measureFps(video, FPS_SECONDS);
  const settings = track.getSettings();
  const width = video.videoWidth || settings.width || 0;
  const height = video.videoHeight || settings.height || 0;
  const frameRate = Math.round((fps ?? settings.frameRate ?? 0) * 10) / 10;
  state.camera = { status: "ok", width, height, frame_rate: frameRate };
  $("pc-resolution").textContent = `${width}×${height}`;
  $("pc-fps").textContent = `${fmt.fps(frameRate)} fps`;
  step("pc-camera", "done");
}

function checkMicrophone(track) {
  step("pc-mic", "running");
  if (!track) {
    state.microphone = { status: statusOf(media.problems, "mic") };
    $("pc-mic-status").textContent = t(`precall.device.${state.microphone.status}`);
    step("pc-mic", "done");
    return;
  }
  state.microphone = { status: "ok", level: 0 };
  const source = audioContext.createMediaStreamSource(new MediaStream([track]));
  const analyser = audioContext.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const bar = $("pc-meter-bar");
  const meter = $("pc-meter");
  meterTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const s of samples) peak = Math.max(peak, Math.abs(s));
    peak = Math.min(1, peak);
    state.microphone.level = Math.round(Math.max(state.microphone.level, peak) * 1000) / 1000;
    const percent = Math.round(Math.min(1, Math.sqrt(peak)) * 100);
    bar.style.width = `${percent}%`;
    meter.setAttribute("aria-valuenow", String(percent));
    if (state.microphone.level >= 0.01) step("pc-mic", "done");
  }, 60);
}

// -- speaker --------------------------------------------------------------------------

function playTone() {
  const osc = audioContext.createOscillator();
  const gain = audioContext.createGain();
  osc.frequency.value = 660;
  gain.gain.setValueAtTime(0, audioContext.currentTime);
  gain.gain.linearRampToValueAtTime(0.3, audioContext.currentTime + 0.05);
  gain.gain.setValueAtTime(0.3, audioContext.currentTime + 1.2);
  gain.gain.linearRampToValueAtTime(0, audioContext.currentTime + 1.3);
  osc.connect(gain).connect(audioContext.destination);
  osc.start();
  osc.stop(audioContext.currentTime + 1.35);
  step("pc-speaker", "running");
  $("pc-ask").hidden = false;
}

function answerSpeaker(value) {
  state.speaker = value;
  $("pc-ask").hidden = true;
  $("pc-speaker-status").textContent = t(`precall.speaker.${value}`);
  step("pc-speaker", "done");
  finish();
}

// -- network --------------------------------------------------------------------------

function pathRow(name) {
  return el(
    "tr",
    { id: `pc-path-${name}`, dataset: { path: name, status: "waiting" } },
    el("td", { class: "cell-strong pc-path-name", text: t(`precall.path.${name}`) }),
    el("td", {
      class: "pc-path-status",
      "data-label": t("precall.fig.status"),
      text: t("precall.step.waiting"),
    }),
    ...["uplink", "loss", "rtt"].map((figure) =>
      el("td", {
        class: "num",
        "data-label": t(`precall.fig.${figure}`),
        dataset: { figure },
        text: "–",
      }),
    ),
  );
}

function showPath(result, progress = null) {
  const row = $(`pc-path-${result.name}`);
  row.dataset.status = result.status;
  const status = row.querySelector(".pc-path-status");
  if (result.status === "running") {
    status.textContent = `${t("precall.step.running")} ${Math.round((progress || 0) * 100)}%`;
    return;
  }
  status.textContent = t(`precall.path.status.${result.status}`);
  const cell = (key, text) => {
    row.querySelector(`[data-figure="${key}"]`).textContent = text;
  };
  if (result.status === "ok") {
    cell("uplink", fmt.mbit(result.uplink_kbps));
    cell("loss", fmt.percent(result.loss_percent));
    cell("rtt", fmt.ms(result.rtt_ms));
  }
}

async function checkNetwork(plan) {
  step("pc-network", "running");
  const byName = new Map(plan.paths.map((p) => [p.name, p]));
  const results = [];
  for (const name of PATHS) {
    const path = byName.get(name) || { name, configured: false };
    showPath({ name, status: path.configured ? "running" : "not_configured" });
    const result = await probePath(cid, path, plan.probe, (progress) =>
      showPath({ name, status: "running" }, progress),
    );
    showPath(result);
    results.push(result);
  }
  state.paths = results;
  step("pc-network", "done");
}

// -- the result -----------------------------------------------------------------------

function showVerdict(check) {
  const box = $("pc-verdict");
  box.dataset.verdict = check.verdict;
  $("pc-verdict-text").replaceChildren(verdictBadge(check.verdict));
  $("pc-verdict-saved").textContent = t("precall.saved");
  $("pc-reasons").replaceChildren(...reasonList(check.report.reasons));
  // Where the verdict advises the low-bandwidth mode, or it is already on for
  // this computer's calls (the call page's switch, kept in localStorage), it can
  // be switched here for the calls to come.
  const advised = check.report.reasons.some((r) => r.code === "uplink_too_low");
  $("pc-lowbw").hidden = !advised && !readManual();
  showLowBandwidth();
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

function showLowBandwidth() {
  const on = readManual();
  $("pc-lowbw").dataset.on = String(on);
  $("pc-lowbw-state").textContent = t(on ? "precall.lowbw.on" : "precall.lowbw.off");
  $("pc-lowbw-switch").textContent = t(on ? "precall.lowbw.turn_off" : "precall.lowbw.turn_on");
}

let finishing = false;

async function finish() {
  if (finishing || !state.paths || !state.camera || !state.microphone || !state.speaker) return;
  finishing = true;
  clearInterval(meterTimer);
  const body = {
    camera: state.camera,
    microphone: state.microphone,
    speaker: state.speaker,
    paths: state.paths.map(({ via, ...rest }) => rest),
  };
  try {
    const { check } = await post(`/api/consultations/${encodeURIComponent(cid)}/precall`, body);
    state.check = check;
    document.body.dataset.verdict = check.verdict;
    showVerdict(check);
  } catch (err) {
    if (handleAuthLoss(err)) return;
    const box = $("pc-error");
    box.textContent = `${t("precall.save_failed")} ${errorMessage(err)}`;
    box.hidden = false;
  }
}

async function run() {
  $("pc-error").hidden = true;
  $("pc-intro").hidden = true;
  $("pc-verdict").hidden = true;
  $("pc-checks").hidden = false;
  Object.assign(state, { camera: null, microphone: null, speaker: null, paths: null, check: null });
  finishing = false;
  $("pc-ask").hidden = true;
  $("pc-speaker-status").textContent = "";
  step("pc-speaker", "waiting");
  audioContext = audioContext || new AudioContext();
  await audioContext.resume();
  let plan;
  try {
    plan = await get(`/api/consultations/${encodeURIComponent(cid)}/precall`);
  } catch (err) {
    if (handleAuthLoss(err)) return;
    const box = $("pc-error");
    box.textContent = err.status === 404 ? t("precall.not_found") : errorMessage(err);
    box.hidden = false;
    return;
  }
  $("pc-paths").replaceChildren(...PATHS.map(pathRow));
  if (media) for (const track of [media.audio, media.video]) if (track) track.stop();
  media = await openMedia();
  checkMicrophone(media.audio);
  await Promise.all([checkCamera(media.video), checkNetwork(plan)]);
  await finish();
}

$("pc-start").addEventListener("click", run);
$("pc-again").addEventListener("click", run);
$("pc-lowbw-switch").addEventListener("click", () => {
  writeManual(!readManual());
  showLowBandwidth();
});
$("pc-tone").addEventListener("click", playTone);
$("pc-heard").addEventListener("click", () => answerSpeaker("heard"));
$("pc-not-heard").addEventListener("click", () => answerSpeaker("not_heard"));
$("pc-skip-speaker").addEventListener("click", () => answerSpeaker("skipped"));
