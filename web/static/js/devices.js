// Camera and microphone for the call, with what to tell the user when one of
// them cannot be had. The call never depends on them: without a camera it goes
// on with the voice, without either the page still shows and plays the others.

// Enough for a consultation over a county link, and light on old clinic PCs.
export const VIDEO_CONSTRAINTS = {
  width: { ideal: 640, max: 640 },
  height: { ideal: 480, max: 480 },
  frameRate: { ideal: 24, max: 24 },
};
export const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true };

function classify(kind, err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") return `${kind}_denied`;
  if (name === "NotReadableError" || name === "AbortError") return "busy";
  return `${kind}_missing`; // NotFoundError, OverconstrainedError, no mediaDevices...
}

async function ask(constraints) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new DOMException("no media devices", "NotFoundError");
  }
  return navigator.mediaDevices.getUserMedia(constraints);
}

// {audio: track|null, video: track|null, problems: ["camera_denied", ...]}
export async function openMedia() {
  try {
    const stream = await ask({ audio: AUDIO_CONSTRAINTS, video: VIDEO_CONSTRAINTS });
    return {
      audio: stream.getAudioTracks()[0] || null,
      video: stream.getVideoTracks()[0] || null,
      problems: [],
    };
  } catch {
    // One of the two failed: ask for each alone to know which, and keep the other.
  }
  const problems = [];
  let audio = null;
  let video = null;
  try {
    audio = (await ask({ audio: AUDIO_CONSTRAINTS })).getAudioTracks()[0] || null;
  } catch (err) {
    problems.push(classify("mic", err));
  }
  try {
    video = (await ask({ video: VIDEO_CONSTRAINTS })).getVideoTracks()[0] || null;
  } catch (err) {
    problems.push(classify("camera", err));
  }
  if (!audio && !video) return { audio, video, problems: ["none", ...problems] };
  return { audio, video, problems: [...new Set(problems)] };
}

// The camera again (leaving audio-only mode): {video, problems}.
export async function openCamera() {
  try {
    const stream = await ask({ video: VIDEO_CONSTRAINTS });
    return { video: stream.getVideoTracks()[0] || null, problems: [] };
  } catch (err) {
    return { video: null, problems: [classify("camera", err)] };
  }
}
