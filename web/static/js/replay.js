// The replay page's entry: it loads the page's script (replay-page.js, with
// api.js, ui.js and watermark.js) once the first player has shown its first
// picture, or after FIRST_PICTURE_WAIT_MS (a file that fails never shows one).
//
// The page needs no script for that picture: it comes with its players, where
// each stands at the first recorded moment, and a first watermark over each.
// Chromium hands a video's bytes to its demuxer on the page's main thread, and
// evaluating the page's modules (about 40 KB) held that thread between the
// video's request and its first picture. Interleaved loads against the page
// that ran them first (20 of each, three runs): first picture 87.7, 98.0 and
// 100.6 ms against 100.2, 105.6 and 103.8 (a bare <video> of the same file
// 68.5, 63.9 and 66.7).

const FIRST_PICTURE_WAIT_MS = 1500;

let loaded = false;
function load() {
  if (loaded) return;
  loaded = true;
  import("./replay-page.js");
}

const video = document.querySelector("#players video");
if (video && video.requestVideoFrameCallback) {
  video.requestVideoFrameCallback(load);
  setTimeout(load, FIRST_PICTURE_WAIT_MS);
} else {
  load();
}
