"""Township benchmark: a clinic on a weak uplink in a real call, mesh against relay.

    python tests/bench/township.py [--profiles P,...] [--parties 2,4] [--seconds S]
                                   [--planes mesh-off,mesh-rec,relay]

The clinic (``clinic1``) and the hospital sides (``cardio1``, then ``county1`` and
``cardio2`` for 4 parties) are real Chromium pages; the server is this
process's app. ``tests/netlab.py`` joins a clinic and a hospital network namespace
through an impaired path (rate, loss, delay in user space); the server and the
hospital pages live in the hospital namespace, the clinic's page in the clinic's.
The camera is a 640x480 24 fps clip with camera-like detail and motion
(``--use-file-for-fake-video-capture``), made once per run; the hospital pages'
is the same clip at 320x240 (``--hospital-camera``): their video is not what is
measured, and four pages sending and decoding 640x480 took both of this
machine's cores, where each side of a real call has a PC of its own. The link
runs in a process of its own at real-time priority, and the clinic's browser on
a CPU of its own (``--clinic-cpu``, 0 by default; everything else, the server,
the hospital's browser and the link, on the others; ``--clinic-cpu none``
shares every CPU, with the clinic's browser at ``nice`` -10): in a township the
clinic's page has a PC to itself, and the path's timing is not the test
machine's. Sharing this machine's two cores, the clinic's browser and the
server took them from each other: in 4-party calls the server's loop ran up to
93-161 ms late and the clinic's encoder skipped frames; with the clinic's
browser on its own CPU the loop was never more than 32 ms late (2026-12-05).
``--detail`` prints how busy the machine was, how many packets crossed the link
late, how late the server's event loop ran (and what it ran when more than 100
ms late), where each call's call-up went (when each of the clinic's and the
viewer's connections reached each step: ICE, DTLS, first packet, first
keyframe; when each signaling message went and came, from the moment the last
page joined), every keyframe the clinic encoded and why the server asked for
each one it asked for, and why each frame the recorder left out went missing.
``--precall`` has the clinic's page run the pre-call check over its link
before each call, and prints what it measured and its verdict.
``--repeat N`` runs each cell N times; the summary gives each profile's median
and slowest call-up.

Planes, each on the same link and clip, back to back:
  mesh-off   browser mesh, the patient did not consent to recording: no leg
  mesh-rec   browser mesh plus each page's capped recording leg (the old plane)
  relay      each page sends once, to the server, which records and relays
  relay-nofec  the same without RED and ULPFEC on the leg (``video_fec = false``;
             not among the defaults): losses repaired by NACK alone
  relay-nohold the relay without the server's hold on the viewers' video
             (``relay_hold_max_ms = 0``; not among the defaults): only the
             page's own, one step per freeze

For each call, after ``--warmup`` seconds, over ``--seconds``: what the hospital's
first page receives of the clinic (video kbit/s, fps, freezes, width; audio
concealment), and the clinic's recording: frames in the file against the frames
the clinic's camera delivered to that connection, the largest gap in frames, and
the narrowest picture in the file. The last line:

  township: live bitrate with recording >= X% of without at 1 Mbit/s + 5% loss; recorded frames Y%

where X is the relay's (and, beside it, the old plane's) clinic video bitrate as a
share of mesh-off's in the same run, 2 parties, and Y the worst relay call's
recorded share over the whole call: the file's frames against the frames the
clinic's camera delivered to its leg from the moment the leg's connection was up
to the moment the page sent "end" (what the camera delivers after that is not
the call's, and the server stops recording the leg when "end" reaches it). The
file's frames are told apart by the index each clip frame carries
(``read_stamp``): the page reads its camera frame's when it sends "end", and the
file is counted up to that frame. The frames the camera delivered while the
connection was still being set up (ICE and DTLS: two round trips after the
answer, before anyone saw the picture) are counted apart ("set-up frames") and,
with them, printed on the line before.
The bitrate compared is the clinic's encoder's (its ``targetBitrate`` for the
connection that carries the live video, sampled every second: "encoder
kbit/s"). What the viewer received ("live kbit/s") is not comparable across
planes since both carry ULPFEC: browser to browser its FEC packets arrive and
count as received video bytes (Chromium reports none of them as FEC), while the
relay's recorder rebuilds losses from them and forwards only the media. Both
ratios are printed.
Needs root (network namespaces), Debian's chromium, and a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import gc
import itertools
import logging
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402

from records.demo import DEMO_PASSWORD  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.e2e.conftest import COUNT_PCS, run_check  # noqa: E402
from tests.netlab import HOSPITAL, LATE_MS, Host, Link, Profile  # noqa: E402
from tests.scenario import over_http  # noqa: E402
from web.app import create_app  # noqa: E402
from web.cli import _load_demo as load_demo_data  # noqa: E402
from web.cli import tune_gc  # noqa: E402
from web.keys import RECORDING  # noqa: E402
from web.settings import NO_SECRET, Secret  # noqa: E402
from web.tls import ensure_self_signed  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT, FPS = 640, 480, 24
# Each clip frame carries its index (mod the clip's length) in a strip of cells
# along its bottom edge: 8 bits, an even-parity bit and a cell always white.
# The page reads the stamp of its camera's frame when it sends "end", so the
# file's frames after the call's end (the server stops when "end" reaches it, a
# one-way trip later) are left out of its count. The stamps also show where the
# file lacks the camera's frames; on this busy 2-core machine, some of those
# the camera's capture skipped itself (Chromium's file camera delivers the
# clip's frame for the time: a starved capture thread skips frames), and the
# page's track never had them: the count of frames the track delivered
# (media-source) is what the file is measured against.
STAMP_CELLS, STAMP_ROWS = 10, 32
CLIP_SECONDS = 6
HOSPITAL_USERS = ["cardio1", "county1", "cardio2"]
CLINIC_NICE = -10  # the clinic's browser before the rest of this machine (see one_call)


# What a hospital page receives from one peer (the clinic).
RECEIVED = """async (id) => {
  const pc = window.__call.pc(id);
  if (!pc) return null;
  const out = { t: performance.now(), vBytes: 0, frames: 0, freezes: 0, width: 0,
                concealed: 0, samples: 0, concealEvents: 0, audioFec: 0, audioLost: 0,
                audioPackets: 0, audioFecDiscarded: 0 };
  // The page's hold on the relayed video (playout.js; null in a mesh).
  const video = pc.getReceivers().find((r) => r.track && r.track.kind === "video");
  out.target = video && "jitterBufferTarget" in video ? video.jitterBufferTarget : null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out.vBytes = s.bytesReceived || 0; out.frames = s.framesDecoded || 0;
      out.freezes = s.freezeCount || 0; out.width = s.frameWidth || 0;
      out.freezeSeconds = s.totalFreezesDuration || 0; out.nacks = s.nackCount || 0;
      out.plis = s.pliCount || 0; out.jbDelay = s.jitterBufferDelay || 0;
      out.jbEmitted = s.jitterBufferEmittedCount || 0;
      out.fec = s.fecPacketsReceived || 0; out.rtx = s.retransmittedPacketsReceived || 0;
      out.lost = s.packetsLost || 0; out.packets = s.packetsReceived || 0;
    }
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.concealed = s.concealedSamples || 0; out.samples = s.totalSamplesReceived || 0;
      out.concealEvents = s.concealmentEvents || 0;
      // Opus's in-band FEC: packets that came with a copy of the one before.
      out.audioFec = s.fecPacketsReceived || 0; out.audioLost = s.packetsLost || 0;
      out.audioFecDiscarded = s.fecPacketsDiscarded || 0;
      out.audioPackets = s.packetsReceived || 0;
    }
  });
  return out;
}"""

# The clinic's connections that send video: bytes, and the camera frames each got.
SENDING = """async () => {
  const peers = new Set(window.__call.peers().map((id) => window.__call.pc(id)));
  const out = [];
  for (const [index, pc] of window.__pcs.entries()) {
    if (pc.connectionState === "closed") continue;
    let bytes = 0, sourceFrames = 0, sent = 0, width = 0, pair = null;
    let limits = null, encoded = 0, target = 0, retransmitted = 0, keyframes = 0, plis = 0;
    const report = await pc.getStats();
    report.forEach((s) => {
      const chosen = s.type === "transport" && s.selectedCandidatePairId;
      if (chosen) pair = report.get(chosen);
      if (s.type === "outbound-rtp" && s.kind === "video") {
        bytes += s.bytesSent || 0; sent += s.framesSent || 0; width = s.frameWidth || width;
        limits = s.qualityLimitationDurations || null; encoded = s.framesEncoded || 0;
        target = s.targetBitrate || 0; retransmitted = s.retransmittedBytesSent || 0;
        keyframes = s.keyFramesEncoded || 0; plis = s.pliCount || 0;
      }
      if (s.type === "media-source" && s.kind === "video") sourceFrames = s.frames || 0;
    });
    const leg = !peers.has(pc);
    const local = pair && report.get(pair.localCandidateId);
    const via = local ? [local.candidateType, local.relayProtocol || local.protocol] : [];
    const path = via.join("/");
    if (bytes > 0) out.push({ leg, bytes, sourceFrames, sent, width, path, t: performance.now(),
                              limits, encoded, target, retransmitted, keyframes, plis,
                              index });
  }
  return out;
}"""


# What the camera had delivered to each connection, and what it had sent, when
# the connection came up (frames before that cannot be sent: they are the
# set-up's, not the recording's) and when the page sent "end" (the call's end:
# what the camera delivers after it is not the call's).
COUNTS = """
(() => {
  const [STAMP_CELLS, STAMP_ROWS, HEIGHT] = [__STAMP__];
  const counts = async (pc) => {
    let camera = null, sent = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "media-source" && s.kind === "video") camera = s.frames || 0;
      if (s.type === "outbound-rtp" && s.kind === "video") sent += s.framesSent || 0;
    });
    return { camera, sent };
  };
  // The stamp (see read_stamp) of the next frame the camera delivers to the
  // connection, read as read_stamp reads it.
  const stampNow = async (pc) => {
    const sender = pc.getSenders().find((s) => s.track && s.track.kind === "video");
    if (!sender || sender.track.readyState !== "live") return null;
    const asked = performance.now();
    try {
      const bitmap = await new ImageCapture(sender.track).grabFrame();
      pc.__stampWait = performance.now() - asked;
      const { width: w, height: h } = bitmap;
      const canvas = new OffscreenCanvas(w, h);
      const context = canvas.getContext("2d");
      context.drawImage(bitmap, 0, 0);
      const top = h - Math.floor((h * STAMP_ROWS) / HEIGHT);
      const y0 = top + Math.floor((h - top) / 4), y1 = h - Math.floor((h - top) / 4);
      const bits = [];
      for (let k = 0; k < STAMP_CELLS; k++) {
        const x0 = Math.floor((w / STAMP_CELLS) * (k + 0.25));
        const x1 = Math.floor((w / STAMP_CELLS) * (k + 0.75));
        const { data } = context.getImageData(x0, y0, x1 - x0, y1 - y0);
        let sum = 0;
        for (let i = 0; i < data.length; i += 4) sum += data[i] + data[i + 1] + data[i + 2];
        bits.push(sum / (data.length / 4) / 3 > 128 ? 1 : 0);
      }
      const index = bits.slice(0, 8).reduce((n, bit, b) => n | (bit << b), 0);
      const parity = bits.slice(0, 8).reduce((a, b) => a + b, 0) % 2;
      return bits[8] === parity && bits[9] === 1 ? index : null;
    } catch (error) {
      return null;
    }
  };
  const Wrapped = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new Wrapped(...args);
    pc.addEventListener("connectionstatechange", async () => {
      if (pc.connectionState !== "connected" || pc.__atConnect !== undefined) return;
      pc.__atConnect = null;
      // The recording leg's camera comes to its sender once the connection is
      // up (recording.js attachCamera): its counts start then.
      const sendsVideo = () => pc.getTransceivers().some(
        (t) => t.receiver.track.kind === "video" && /send/.test(t.direction));
      const attached = () => pc.getSenders().some((s) => s.track && s.track.kind === "video");
      const connectedAt = performance.now();
      while (sendsVideo() && !attached() && performance.now() < connectedAt + 1000) {
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      pc.__attachWait = performance.now() - connectedAt;
      let atConnect = await counts(pc);
      // Its media-source stats come with its first frame.
      while (attached() && atConnect.camera === null && performance.now() < connectedAt + 1000) {
        await new Promise((resolve) => setTimeout(resolve, 2));
        atConnect = await counts(pc);
      }
      pc.__atConnect = atConnect;
      // ... and when it sent its first frame: the encoder starts once the
      // transport tells it the network is up, a little after "connected".
      // Only a connection that sends a camera, and not for long: a getStats
      // every 10 ms through a 4-party call cost the pages' CPU what they then
      // lacked (a relayed connection to a page sends no video).
      const sends = pc.getSenders().some((s) => s.track && s.track.kind === "video");
      const until = performance.now() + 5000;
      while (sends && pc.__atFirst === undefined && performance.now() < until) {
        const c = await counts(pc);
        if (c.sent > 0) {
          pc.__atFirst = c;
          // The camera's frame then: where the file should begin (--detail).
          pc.__firstStamp = await stampNow(pc);
        } else await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // --start-trace: the encoder's first 2.5 s, a row whenever a count moved
      // ([ms since the first frame sent, camera frames, frames encoded,
      // keyframes, encode ms in all, frames sent, the encoder's target bit/s]).
      if (sends && window.__startTrace) {
        const trace = (pc.__trace = []);
        const t0 = performance.now();
        let last = "";
        while (performance.now() < t0 + 2500) {
          let row = null;
          (await pc.getStats()).forEach((s) => {
            if (s.type === "media-source" && s.kind === "video") row = [s.frames, ...(row || [])];
            if (s.type === "outbound-rtp" && s.kind === "video")
              row = [...(row || []), s.framesEncoded, s.keyFramesEncoded,
                     Math.round((s.totalEncodeTime || 0) * 1000), s.framesSent, s.targetBitrate];
          });
          const key = JSON.stringify(row);
          if (key !== last) {
            trace.push([Math.round(performance.now() - t0), ...(row || [])]);
            last = key;
          }
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        pc.__traceDone = true;
      }
    });
    return pc;
  };
  window.RTCPeerConnection.prototype = Wrapped.prototype;
  // The call's end for a connection: its counts and its camera's frame when
  // the doctor ends the call (read just before the click: the page then sends
  // "end" once those frames are encoded, recording.js flush), or at "end".
  const atEnd = (pc) => {
    if (pc.__endRead || pc.signalingState === "closed") return null;
    pc.__endRead = true;
    return Promise.all([counts(pc), stampNow(pc)]).then(([c, stamp]) => {
      pc.__atEnd = { ...c, stamp };
    });
  };
  window.__readEnd = async () => {
    await Promise.all(window.__pcs.map(atEnd));
    window.__flushFrom = performance.now();
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    let type = null;
    try { type = JSON.parse(data).type; } catch (error) {}
    if (type === "end") {
      for (const pc of window.__pcs) atEnd(pc);
      // From the read just before the click to "end".
      const from = window.__flushFrom;
      if (from !== undefined) window.__flushMs = performance.now() - from;
    }
    return send.call(this, data);
  };
})();
""".replace("__STAMP__", f"{STAMP_CELLS}, {STAMP_ROWS}, {HEIGHT}")


# The counts of window.__pcs[index] (COUNTS), once the page has sent "end".
LEG_ENDED = "(index) => window.__pcs[index].__atEnd !== undefined"
LEG_TOTALS = """(index) => {
  const pc = window.__pcs[index];
  return { atConnect: pc.__atConnect ?? null, atFirst: pc.__atFirst ?? null,
           atEnd: pc.__atEnd ?? null, stampWait: pc.__stampWait ?? null,
           attachWait: pc.__attachWait ?? null,
           firstStamp: pc.__firstStamp ?? null };
}"""


# With --detail: when each of a page's connections got where (wall-clock ms),
# for the call-up's parts: ICE, DTLS, the first packet, keyframe and picture.
CALL_UP = """
(() => {
  const Wrapped = window.RTCPeerConnection;
  window.__marks = [];
  const now = () => performance.timeOrigin + performance.now();
  window.RTCPeerConnection = function (...args) {
    const pc = new Wrapped(...args);
    const marks = { created: now() };
    window.__marks.push(marks);
    const mark = (what) => { if (!(what in marks)) marks[what] = now(); };
    pc.addEventListener("iceconnectionstatechange", () => mark("ice " + pc.iceConnectionState));
    pc.addEventListener("connectionstatechange", () => mark(pc.connectionState));
    let keyframes = 0;
    const poll = setInterval(async () => {
      if (pc.connectionState === "closed" || now() - marks.created > 15000) {
        clearInterval(poll);
        return;
      }
      (await pc.getStats()).forEach((s) => {
        if (s.kind !== "video") return;
        if (s.type === "inbound-rtp") {
          if (s.packetsReceived) mark("first packet");
          if (s.keyFramesDecoded) mark("keyframe decoded");
          if (s.framesDecoded) mark("frame decoded");
        }
        if (s.type === "outbound-rtp") {
          if (s.packetsSent) mark("first packet sent");
          if ((s.keyFramesEncoded || 0) > keyframes) {
            keyframes = s.keyFramesEncoded;
            marks["keyframe " + keyframes + " encoded"] = now();
          }
        }
      });
    }, 20);
    return pc;
  };
  window.RTCPeerConnection.prototype = Wrapped.prototype;
  // The signaling messages, the first of each type, on the page's socket.
  const socket = (window.__socket = { created: now() });
  const first = (what) => { if (!(what in socket)) socket[what] = now(); };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try { first("sent " + JSON.parse(data).type); } catch (error) {}
    return send.call(this, data);
  };
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener("open", () => first("open"));
    ws.addEventListener("message", ({ data }) => {
      try { first("got " + JSON.parse(data).type); } catch (error) {}
    });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""


# The call as a page sees it, for a call that did not come up.
DIAGNOSIS = """async () => {
  const c = window.__call;
  if (!c) return location.pathname;
  const pcs = [];
  for (const pc of window.__pcs || []) {
    const v = {};
    (await pc.getStats()).forEach((s) => {
      if (s.kind === "video" && (s.type === "inbound-rtp" || s.type === "outbound-rtp")) {
        v[s.type] = [s.packetsReceived ?? s.packetsSent, s.framesDecoded ?? s.framesSent,
                     s.keyFramesDecoded ?? s.keyFramesEncoded, s.nackCount, s.pliCount,
                     s.frameWidth, s.packetsLost, s.qualityLimitationReason];
      }
    });
    pcs.push([pc.connectionState, v]);
  }
  return JSON.stringify({ state: c.state, mode: c.mode(), peers: c.peers().length,
                          rec: c.recording().state, pcs });
}"""


@dataclasses.dataclass
class Row:
    profile: str
    plane: str
    parties: int
    up_s: float = 0.0
    kbps: float = 0.0
    fps: float = 0.0
    freezes: int = 0
    width: int = 0
    conceal_pct: float = 0.0
    conceal_events: int = 0
    # The mean length of a concealment event (ms of audio at 48 kHz): about one
    # packet (20 ms) each is a loss here and there; bursts run to hundreds.
    conceal_ms: float | None = None
    leg_kbps: float | None = None
    # The clinic's encoder's rate for the live video (mean of its targetBitrate
    # over the window: the peer connections in a mesh, the leg in the relay).
    encoder_kbps: float | None = None
    # The whole call's file against the frames the camera delivered to the leg,
    # from the leg's set-up ...
    recorded_pct: float | None = None
    # ... of them, those it delivered before the leg's connection was up (no
    # page can send those) ...
    setup_frames: int | None = None
    # ... the file against the frames delivered while the leg was up ...
    connected_pct: float | None = None
    # ... of them, those it delivered before the encoder's first frame on it
    # (the transport's "network up" comes a little after "connected") ...
    start_frames: int | None = None
    # ... the file against the camera's frames from the leg's first frame sent
    # to the end (what the encoder and the recorder lost while it was sending) ...
    sending_pct: float | None = None
    # ... against what the browser encoded and sent on it (the server's part) ...
    of_sent_pct: float | None = None
    # ... and what share of the camera's frames the encoder sent while the call
    # was up (the measurement window: the browser's part).
    encoded_pct: float | None = None
    path: str = ""
    max_gap: int | None = None
    min_width: int | None = None
    error: str = ""


def stamp_bits(index: int) -> list[int]:
    bits = [(index >> b) & 1 for b in range(8)]
    return [*bits, sum(bits) % 2, 1]


def read_stamp(gray: np.ndarray) -> int | None:
    """The clip index a decoded (luma) frame carries, or None if it cannot be read."""
    height, width = gray.shape
    top = height - height * STAMP_ROWS // HEIGHT
    cell = width / STAMP_CELLS
    levels = [
        gray[
            top + (height - top) // 4 : height - (height - top) // 4,
            int(cell * (k + 0.25)) : int(cell * (k + 0.75)),
        ].mean()
        for k in range(STAMP_CELLS)
    ]
    bits = [int(level > 128) for level in levels]
    index = sum(bit << b for b, bit in enumerate(bits[:8]))
    return index if bits == stamp_bits(index) else None


def make_clip(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
    """A camera-like 640x480 clip: textured, moving, with sensor noise (y4m), each
    frame stamped with its index; scaled to ``size`` (the hospital sides')."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    texture = (rng.random((HEIGHT // 8, WIDTH // 8)) * 80).repeat(8, 0).repeat(8, 1)
    cell = WIDTH // STAMP_CELLS
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for n in range(CLIP_SECONDS * FPS):
            shift = int(6 * n) % WIDTH
            y = 60 + 0.15 * xx + 0.1 * yy + np.roll(texture, shift, axis=1)
            cx, cy = 320 + 180 * np.sin(n / 15), 240 + 120 * np.cos(n / 11)
            y[(xx - cx) ** 2 + (yy - cy) ** 2 < 60**2] = 220  # a moving "head"
            y += rng.normal(0, 3, y.shape)
            rgb = np.clip(np.stack([y, y * 0.9, y * 0.8], axis=-1), 0, 255).astype(np.uint8)
            for k, bit in enumerate(stamp_bits(n)):
                rgb[HEIGHT - STAMP_ROWS :, k * cell : (k + 1) * cell] = 235 if bit else 16
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                width=size[0], height=size[1], format="yuv420p"
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def machine_cpu() -> list[tuple[int, int]]:
    """The (busy, total) CPU time so far, in clock ticks (/proc/stat): the
    machine's first, then each CPU's."""
    out = []
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if not line.startswith("cpu"):
                break
            ticks = [int(t) for t in line.split()[1:]]
            idle = ticks[3] + ticks[4]  # idle, iowait
            out.append((sum(ticks) - idle, sum(ticks)))
    return out


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time that was busy between two ``machine_cpu()`` entries."""
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


def busy_line(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> str:
    """How busy the machine and each of its CPUs was between two ``machine_cpu()``."""
    shares = [busy_share(b, a) for b, a in zip(before, after, strict=True)]
    each = ", ".join(f"cpu{n} {share:.0%}" for n, share in enumerate(shares[1:]))
    return f"{shares[0]:.0%} ({each})"


class LoopStalls:
    """How late this process's event loop (the server's, unless ``--media-workers``)
    ran a 10 ms timer over the measurement window: a stall delays every packet the
    relay forwards, the viewers' audio included. A watchdog thread notes what the
    loop's thread was running whenever the loop is more than 100 ms behind, and the
    garbage collector's pauses are timed: where a stall came from."""

    TICK = 0.010
    WATCH_MS = 100.0

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self.beat = time.monotonic()
        self.where: collections.Counter[str] = collections.Counter()
        self.gc_ms: list[float] = []
        self.stall_cpu: list[tuple[float, float]] = []
        self._gc_start = 0.0
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        gc.callbacks.append(self._gc)
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()
        self.task = asyncio.create_task(self._run(), name="township-loop-stalls")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.TICK
            cpu = time.thread_time()
            await asyncio.sleep(self.TICK)
            self.beat = time.monotonic()
            late = 1000 * (loop.time() - due)
            self.late_ms.append(late)
            if late > self.WATCH_MS:
                # The loop's thread's CPU time over the stall: about the stall's
                # length if a callback ran that long, little if the thread waited
                # for a CPU.
                self.stall_cpu.append((late, 1000 * (time.thread_time() - cpu)))

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_ms.append(1000 * (time.perf_counter() - self._gc_start))

    def _watchdog(self) -> None:
        noted = 0.0
        while not self._stop.wait(0.02):
            beat = self.beat
            if 1000 * (time.monotonic() - beat) > self.WATCH_MS and beat != noted:
                noted = beat
                frame = sys._current_frames().get(self._loop_thread)
                stack = traceback.extract_stack(frame)[-4:] if frame else []
                self.where[
                    " < ".join(
                        f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack)
                    )
                ] += 1

    def close(self) -> None:
        """Stop measuring (again is harmless): the timer, the watchdog, the GC hook."""
        self.task.cancel()
        self._stop.set()
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)

    def stop(self) -> str:
        """Stop measuring and say what was measured."""
        self.close()
        late = sorted(self.late_ms) or [0.0]
        over = [ms for ms in late if ms > 50]
        p99 = late[min(len(late) - 1, int(0.99 * len(late)))]
        pauses = sorted(self.gc_ms)
        where = "; ".join(f"{n}x {at}" for at, n in self.where.most_common(5))
        return (
            f"server loop late p99 {p99:.0f} ms, longest {late[-1]:.0f} ms, "
            f"{len(over)} tick(s) over 50 ms; GC {len(pauses)} pause(s), longest "
            f"{(pauses or [0.0])[-1]:.0f} ms; over {self.WATCH_MS:.0f} ms "
            f"(late/the loop's CPU meanwhile, ms): "
            f"{', '.join(f'{a:.0f}/{b:.0f}' for a, b in self.stall_cpu) or '-'}, in: {where or '-'}"
        )


def wrapper(path: Path, ns: str, nice: int = 0, cpus: str = "", exe: str = CHROMIUM) -> Path:
    """A script that starts ``exe`` (Chromium) in the network namespace ``ns``, at
    ``nice``, on the CPUs ``cpus`` (taskset's list; all of them if empty)."""
    pin = f"taskset -c {cpus} " if cpus else ""
    path.write_text(
        f'#!/bin/sh\nexec {pin}nice -n {nice} nsenter --net={ns} {exe} "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def clinic_cpu(choice: str) -> int | None:
    """The CPU the clinic's browser gets to itself (``--clinic-cpu``), or None.

    Everything else of this process and what it starts from now on (the server,
    Playwright, the hospital's browser, the link) is moved to the other CPUs. On
    a machine with one CPU there is nothing to give: every process shares it.
    """
    cpus = os.sched_getaffinity(0)
    if choice == "none" or len(cpus) < 2:
        return None
    cpu = int(choice)
    if cpu not in cpus:
        raise SystemExit(f"--clinic-cpu {cpu}: this process may run on CPUs {sorted(cpus)}")
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), cpus - {cpu})
    return cpu


def alone_on(cpu: int) -> int:
    """How many Chromium processes run on ``cpu`` and on no other CPU."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            if fields.get("Name", "").startswith("chrom") and (
                fields.get("Cpus_allowed_list", "").strip() == str(cpu)
            ):
                count += 1
    return count


def cpu_list() -> str:
    """The CPUs this process may run on, as taskset takes them (after
    ``clinic_cpu``: all but the clinic's)."""
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


TURN_SECRET = secrets.token_hex(16)


@contextlib.contextmanager
def coturn(host: Host, tmp: Path) -> Iterator[tuple[str, ...]]:
    """coturn on the hospital's address: TURN over TCP on 3478 and TLS on 443.

    For the UDP-blocked profile: the clinic reaches the server only through it.
    Yields the TURN URLs for the settings.
    """
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        raise SystemExit("the udp-blocked profile needs coturn (apt-get install coturn)")
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = ensure_self_signed(tmp, [HOSPITAL])
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        host.command(
            turnserver,
            "-n",
            f"--listening-ip={HOSPITAL}",
            f"--relay-ip={HOSPITAL}",
            "--listening-port=3478",
            "--tls-listening-port=443",
            f"--cert={cert}",
            f"--pkey={key}",
            "--use-auth-secret",
            f"--static-auth-secret={TURN_SECRET}",
            "--realm=township.bench",
            "--no-cli",
            "--no-dtls",
            "--fingerprint",
            "--min-port=50000",
            "--max-port=50999",
            f"--pidfile={tmp / 'turn.pid'}",
            f"--userdb={tmp / 'turndb'}",
            "--log-file=stdout",
            "--simple-log",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # ready when its TCP listener accepts (we are in its namespace)
            with socket.socket() as probe:
                if probe.connect_ex((HOSPITAL, 3478)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("coturn did not start")
            time.sleep(0.05)
        yield (
            f"turn:{HOSPITAL}:3478?transport=tcp",
            f"turns:{HOSPITAL}:443?transport=tcp",
        )
    finally:
        process.terminate()
        process.wait()


@contextlib.asynccontextmanager
async def server(
    tmp: Path,
    plane: str,
    turn_urls: tuple[str, ...] = (),
    media_workers: int = 0,
    start_bitrate: int | None = None,
) -> AsyncIterator[tuple[web.Application, str]]:
    """The app on the hospital's address (the caller's thread is in its namespace).

    ``media_workers`` 0: this process relays and records (on asyncio's loop);
    more: that many media worker processes (on uvloop), started in the
    hospital's namespace with the app, as ``teleconsult serve`` starts them.
    """
    settings = make_settings(
        tmp / "data",
        media_workers=media_workers,
        media_plane="relay" if plane.startswith("relay") else "mesh",
        video_fec=plane != "relay-nofec",
        relay_hold_max_ms=0 if plane == "relay-nohold" else 600,
        recorder_addresses=(HOSPITAL,),
        ice_allowed_networks=("198.18.0.0/15",),
        turn_urls=turn_urls,
        turn_secret=Secret(TURN_SECRET) if turn_urls else NO_SECRET,
        **({} if start_bitrate is None else {"start_bitrate": start_bitrate}),
    )
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    await load_demo_data(settings)
    app = create_app(settings)
    # The garbage collector as ``teleconsult serve`` sets it: without it, a full
    # collection walked all of this process (the app, Playwright, the run's
    # data: 230,000-280,000 objects in a 4-party call) and stopped the loop
    # for up to 302 ms.
    app.on_startup.append(tune_gc)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOSPITAL, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield app, f"http://{HOSPITAL}:{port}"
    finally:
        await runner.cleanup()
        gc.unfreeze()  # this call's app may go; the next call's startup freezes its own


async def login(
    browser: Any, base: str, username: str, detail: bool = False, start_trace: bool = False
) -> Any:
    context = await browser.new_context(base_url=base, viewport={"width": 1280, "height": 800})
    if start_trace:
        await context.add_init_script("window.__startTrace = true;")
    await context.add_init_script(COUNT_PCS)
    await context.add_init_script(COUNTS)
    if detail:
        await context.add_init_script(CALL_UP)
    page = await context.new_page()
    await page.goto("/login")
    await page.fill("#username", username)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: "/login" not in url)
    return page


async def precall(page: Any, cid: str) -> str:
    """The pre-call check run on ``page`` (kept with the consultation); what it measured."""
    state = await run_check(page, cid)
    report = state["check"]["report"]
    paths = "; ".join(
        f"{p['name']} {fmt(p['uplink_kbps'])} kbit/s up, {fmt(p['loss_percent'], '.1f')} % loss, "
        f"{fmt(p['rtt_ms'])} ms"
        for p in report["paths"]
        if p["status"] == "ok"
    )
    reasons = ", ".join(r["code"] for r in report["reasons"]) or "-"
    return f"pre-call check {state['check']['verdict']} ({reasons}): {paths or 'no path'}"


def args_for(base: str, clip: Path) -> list[str]:
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
        f"--unsafely-treat-insecure-origin-as-secure={base}",
        "--autoplay-policy=no-user-gesture-required",
    ]


def clip_offset(frames: int) -> int:
    """A step of ``frames`` in the looping clip, as the nearest one: between
    minus and plus half the clip's length."""
    length = CLIP_SECONDS * FPS
    step = frames % length
    return step - length if step > length // 2 else step


@dataclasses.dataclass
class FileFrames:
    """What a recorded file holds of the camera's frames."""

    frames: int
    # (seconds into the file, frames missing): the camera's frames the file lacks
    # between two of its frames, told by the clip's stamps (see read_stamp).
    gaps: list[tuple[float, int]]
    narrowest: int
    # Recorded video packets the decoder refused (not counted as frames), and
    # decoded frames whose stamp could not be read (no gap is counted at them).
    refused: int = 0
    unread: int = 0
    # The steps in the timestamps, in frame intervals, that the stamps show were
    # no frame missing: the camera's capture running late.
    late_steps: int = 0
    # Frames whose stamp is the one before's (the camera delivered it twice).
    repeated: int = 0
    # For each gap, whether the frame after it is a keyframe: the signature of
    # the browser's pacer dropping the frames it held queued when a keyframe
    # was asked for (the request's own cost), against a loss on the way.
    keyframe_after: list[bool] = dataclasses.field(default_factory=list)
    # Frames that decode to an earlier frame's picture (seconds into the file).
    wrong: list[float] = dataclasses.field(default_factory=list)
    # Each frame's place in the clip, counted on across its loops.
    places: list[int] = dataclasses.field(default_factory=list)

    def _place_of(self, stamp: int) -> int:
        """The place of the camera's frame with this stamp, in its occurrence
        nearest the file's end (the file must hold frames)."""
        return self.places[-1] + clip_offset(stamp - self.places[-1])

    def until(self, stamp: int) -> int:
        """The file's frames before the camera's frame with this stamp."""
        if not self.places:
            return 0
        end = self._place_of(stamp)
        return sum(1 for place in self.places if place < end)

    def short_of(self, stamp: int) -> int | None:
        """How many of the camera's frames lie between the file's last frame
        before the camera's frame with this stamp and that frame (0: none)."""
        if not self.places:
            return None
        end = self._place_of(stamp)
        before = [place for place in self.places if place < end]
        return end - max(before) - 1 if before else None


def file_frames(path: Path) -> FileFrames:
    """Decode a recorded file and read each frame's stamp (see read_stamp)."""
    pts: list[float] = []
    stamps: list[int | None] = []
    widths: list[int] = []
    keys: list[bool] = []
    refused = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                refused += 1
                continue
            for frame in frames:
                pts.append(float(frame.time or 0.0))
                widths.append(frame.width)
                keys.append(bool(frame.key_frame))
                stamps.append(read_stamp(frame.to_ndarray(format="gray")))
    found = FileFrames(len(pts), [], min(widths, default=0), refused, stamps.count(None))
    length = CLIP_SECONDS * FPS
    steps = [0] * len(pts)
    if len(pts) > 1:
        interval = statistics.median(sorted(b - a for a, b in itertools.pairwise(pts))) or 1 / FPS
        steps = [0] + [round((b - a) / interval) - 1 for a, b in itertools.pairwise(pts)]
    place = 0
    last: tuple[float, int, int] | None = None  # the last good frame's (time, place, stamp)
    for t, stamp, step, key in zip(pts, stamps, steps, keys, strict=True):
        if stamp is None:
            place += 1
        elif last is None:
            place = stamp
            last = (t, place, stamp)
        elif stamp == last[2]:
            # Chromium's file camera delivers the clip's first frame twice each
            # time it loops: a frame repeated, none missing.
            found.repeated += 1
        elif (ahead := (stamp - last[2]) % length) > length // 2:
            # A frame that decodes to an earlier frame's picture: it was written
            # incomplete (not the camera's, whose frames only go forward).
            found.wrong.append(t - pts[0])
            place += 1
        else:
            place = last[1] + ahead
            if ahead > 1:
                found.gaps.append((last[0] - pts[0], ahead - 1))
                found.keyframe_after.append(key)
            found.late_steps += max(step - (ahead - 1), 0)
            last = (t, place, stamp)
        found.places.append(place)
    return found


async def one_call(
    pw: Any, tmp: Path, clips: tuple[Path, Path], profile: str, plane: str, parties: int, args: Any
) -> Row:
    """One call; ``clips``: the clinic's camera and the hospital pages'."""
    clip, hospital_clip = clips
    row = Row(profile, plane, parties)
    async with Link(Profile.named(profile)) as link, contextlib.AsyncExitStack() as stack:
        with link.hospital.entered():
            turn: tuple[str, ...] = ()
            if Profile.named(profile).up.block_udp:
                turn = stack.enter_context(coturn(link.hospital, tmp / "turn"))
            app, base = await stack.enter_async_context(
                server(tmp / "server", plane, turn, args.media_workers, args.start_bitrate)
            )
            scenario = await stack.enter_async_context(over_http(base))
            browsers = {}
            for side, host in (("clinic", link.clinic), ("hospital", link.hospital)):
                # The clinic's page runs on a PC of its own in a township: here it
                # gets a CPU of its own (``--clinic-cpu``), and goes before the
                # rest of the machine (CI's database tests beside it, or every
                # process with ``--clinic-cpu none``: 94-99 % busy in a 4-party
                # call, where its encoder then skipped up to 2-6 % of the
                # camera's frames), so that the table measures the clinic's
                # link, not this machine.
                nice = CLINIC_NICE if side == "clinic" else 0
                cpus = ""
                if args.clinic_cpu is not None:
                    cpus = str(args.clinic_cpu) if side == "clinic" else cpu_list()
                exe = wrapper(tmp / f"chromium-{side}", host.path, nice, cpus)
                camera = clip if side == "clinic" else hospital_clip
                browsers[side] = await pw.chromium.launch(
                    executable_path=str(exe),
                    headless=True,
                    args=args_for(base, camera) + args.chromium_arg,
                )
                stack.push_async_callback(browsers[side].close)
            if plane == "mesh-off":
                consultation = await scenario.consultation(
                    "accepted", patient="陈阿姨", consent=("consultation",)
                )
            else:
                consultation = await scenario.consultation("accepted")
            cid = consultation.id
            clinic = await login(browsers["clinic"], base, "clinic1", args.detail, args.start_trace)
            inviter = await scenario.user("clinic1")
            for extra in HOSPITAL_USERS[1 : parties - 1]:
                status, body = await inviter.post(
                    f"/api/consultations/{cid}/participants", json={"username": extra}
                )
                assert status == 201, body
            hospital = [
                await login(browsers["hospital"], base, u, args.detail)
                for u in HOSPITAL_USERS[: parties - 1]
            ]
            if args.precall:
                print(f"{profile} | {plane} | {parties}: {await precall(clinic, cid)}", flush=True)
            joined = "() => window.__call && window.__call.state.status === 'joined'"
            await clinic.goto(f"/consultations/{cid}/call")
            await clinic.wait_for_function(joined, timeout=30_000)
            clinic_id = await clinic.evaluate("window.__call.peerId")
            for page in hospital:
                await page.goto(f"/consultations/{cid}/call")
            # The call comes up from the moment the last page has joined it.
            for page in hospital:
                await page.wait_for_function(joined, timeout=30_000, polling=50)
            began = time.monotonic()
            began_wall = time.time() * 1000
            viewer = hospital[0]
            try:
                await viewer.wait_for_function(
                    """(id) => { const v = window.__call.remoteVideo(id);
                                 return v && v.videoWidth > 0; }""",
                    arg=clinic_id,
                    timeout=30_000,
                    polling=100,
                )
            except Exception as exc:  # the call did not come up: say so in the table
                seen = [await p.evaluate(DIAGNOSIS) for p in (clinic, viewer)]
                row.error = f"no video: {type(exc).__name__}: {seen}"
                return row
            row.up_s = time.monotonic() - began
            if args.detail:
                print(f"{profile} | {plane} | {parties}: call-up from {began_wall:.0f} (epoch ms)")
                for side, page in (("clinic", clinic), ("viewer", viewer)):
                    marked = await page.evaluate("[window.__socket, ...window.__marks]")
                    for n, marks in enumerate(marked):
                        steps = ", ".join(
                            f"{what} {(at - began_wall) / 1000:+.2f}"
                            for what, at in sorted(marks.items(), key=lambda kv: kv[1])
                        )
                        what = f"pc{n - 1}" if n else "socket"
                        print(f"{profile} | {plane} | {parties}: call-up {side} {what}: {steps}")
            await asyncio.sleep(args.warmup)  # the measurement window is a span of time
            stalls = LoopStalls() if args.detail else None
            if stalls is not None:
                stack.callback(stalls.close)  # also when the call fails before its end
            first = await viewer.evaluate(RECEIVED, clinic_id)
            sent0 = await clinic.evaluate(SENDING)
            cpu0 = machine_cpu()
            live = "leg" if plane.startswith("relay") else "peer"
            targets: list[float] = []
            end = time.monotonic() + args.seconds
            while (left := end - time.monotonic()) > 0:
                await asyncio.sleep(min(1.0, left))  # samples across the window
                now = [
                    s["target"]
                    for s in await clinic.evaluate(SENDING)
                    if s["leg"] == (live == "leg")
                ]
                if now:
                    targets.append(statistics.mean(now))
            last = await viewer.evaluate(RECEIVED, clinic_id)
            sent1 = await clinic.evaluate(SENDING)
            if targets:
                row.encoder_kbps = statistics.mean(targets) / 1000
            busy = busy_line(cpu0, machine_cpu())
            seconds = (last["t"] - first["t"]) / 1000
            row.kbps = (last["vBytes"] - first["vBytes"]) * 8 / 1000 / seconds
            row.fps = (last["frames"] - first["frames"]) / seconds
            row.freezes = last["freezes"] - first["freezes"]
            if args.detail:
                emitted = last["jbEmitted"] - first["jbEmitted"]
                print(
                    f"{profile} | {plane} | {parties}: frozen "
                    f"{last['freezeSeconds'] - first['freezeSeconds']:.2f} s, "
                    f"NACKs {last['nacks'] - first['nacks']}, PLIs {last['plis'] - first['plis']}, "
                    f"FEC {last['fec'] - first['fec']}, RTX {last['rtx'] - first['rtx']}, "
                    f"lost {last['lost'] - first['lost']} of {last['packets'] - first['packets']}, "
                    "jitter buffer "
                    f"{1000 * (last['jbDelay'] - first['jbDelay']) / max(emitted, 1):.0f} ms, "
                    f"target {first['target']} -> {last['target']} ms; audio: "
                    f"lost {last['audioLost'] - first['audioLost']} of "
                    f"{last['audioPackets'] - first['audioPackets']}, "
                    f"with FEC {last['audioFec'] - first['audioFec']} "
                    f"(not used {last['audioFecDiscarded'] - first['audioFecDiscarded']})",
                    flush=True,
                )
            row.width = last["width"]
            samples = last["samples"] - first["samples"]
            row.conceal_pct = 100 * (last["concealed"] - first["concealed"]) / max(samples, 1)
            row.conceal_events = last["concealEvents"] - first["concealEvents"]
            if row.conceal_events:
                concealed_ms = (last["concealed"] - first["concealed"]) / 48
                row.conceal_ms = concealed_ms / row.conceal_events
            leg0 = next((s for s in sent0 if s["leg"]), None)
            leg1 = next((s for s in sent1 if s["leg"]), None)
            if leg0 and leg1:
                if args.detail:
                    limits = {
                        k: round(v - (leg0["limits"] or {}).get(k, 0), 2)
                        for k, v in (leg1["limits"] or {}).items()
                    }
                    camera = leg1["sourceFrames"] - leg0["sourceFrames"]
                    resent = (leg1["retransmitted"] - leg0["retransmitted"]) * 8 / 1000 / seconds
                    print(
                        f"{profile} | {plane} | {parties}: leg encoded "
                        f"{leg1['encoded'] - leg0['encoded']} sent {leg1['sent'] - leg0['sent']} "
                        f"of camera {camera}, limited {limits}, "
                        f"target {leg1['target'] / 1000:.0f} kbit/s, resent {resent:.0f} kbit/s, "
                        f"keyframes {leg1['keyframes'] - leg0['keyframes']} for "
                        f"{leg1['plis'] - leg0['plis']} PLI(s) from the server",
                        flush=True,
                    )
                row.leg_kbps = (leg1["bytes"] - leg0["bytes"]) * 8 / 1000 / seconds
                camera = leg1["sourceFrames"] - leg0["sourceFrames"]
                row.encoded_pct = 100 * (leg1["sent"] - leg0["sent"]) / max(camera, 1)
            if args.detail:
                # What the clinic's video connections sent (RTP payload: the media,
                # its FEC and retransmissions), against what the viewer received.
                sent = ", ".join(
                    f"{'leg' if one['leg'] else 'peer'} "
                    f"{(one['bytes'] - zero['bytes']) * 8 / 1000 / seconds:.0f} kbit/s "
                    f"(target {one['target'] / 1000:.0f})"
                    for zero, one in zip(sent0, sent1, strict=False)
                    if zero["leg"] == one["leg"]
                )
                print(f"{profile} | {plane} | {parties}: clinic sent {sent}", flush=True)
                print(f"{profile} | {plane} | {parties}: machine busy {busy}", flush=True)
                if args.clinic_cpu is not None:
                    print(
                        f"{profile} | {plane} | {parties}: {alone_on(args.clinic_cpu)} "
                        f"Chromium processes on cpu{args.clinic_cpu} alone",
                        flush=True,
                    )
                if stalls is not None:
                    print(f"{profile} | {plane} | {parties}: {stalls.stop()}", flush=True)
                    # What a full collection would walk now, stopping the loop
                    # for as long (frozen objects it skips: ``tune_gc``).
                    tracked = sum(len(gc.get_objects(generation)) for generation in range(3))
                    print(
                        f"{profile} | {plane} | {parties}: garbage collector: {tracked} "
                        f"objects tracked, {gc.get_freeze_count()} frozen",
                        flush=True,
                    )
                for name, lane in (("up", link.up), ("down", link.down)):
                    print(
                        f"{profile} | {plane} | {parties}: link {name} {lane.packets} packets, "
                        f"lost {lane.dropped_loss}, queue full {lane.dropped_queue}, "
                        f"late {lane.late} (> {LATE_MS:.0f} ms after their time)",
                        flush=True,
                    )
            final = next((s for s in await clinic.evaluate(SENDING) if s["leg"]), None)
            row.path = final["path"] if final else ""
            # The doctor who ends the call: the clinic's, or the specialist
            # (--ended-by hospital); the clinic's camera is read at the click.
            ender = clinic if args.ended_by == "clinic" else hospital[0]
            await ender.click("#ctl-end")
            await clinic.evaluate("window.__readEnd()")
            await ender.click('#end-dialog button[value="end"]')
            await clinic.locator('#call[data-finished="ended"]').wait_for()
            flush_ms = await clinic.evaluate("window.__flushMs ?? null")
            if args.detail and flush_ms is not None:
                print(
                    f'{profile} | {plane} | {parties}: the page sent "end" {flush_ms:.0f} ms '
                    "after the camera's frame was read (the click in between)"
                )
            if args.detail:
                # Every keyframe the clinic encoded (the call-up's lines stop at
                # the call-up): each one makes its pacer drop what it holds.
                marked = await clinic.evaluate("window.__marks")
                for n, marks in enumerate(marked):
                    keys = ", ".join(
                        f"{(at - began_wall) / 1000:+.2f}"
                        for what, at in sorted(marks.items(), key=lambda kv: kv[1])
                        if what.startswith("keyframe") and what.endswith("encoded")
                    )
                    if keys:
                        print(f"{profile} | {plane} | {parties}: clinic pc{n} keyframes at {keys}")
            if args.start_trace:
                # Every connection of the clinic's that sent video (the leg, or
                # in the mesh each peer's), once its trace is done.
                await clinic.wait_for_function(
                    "window.__pcs.every((pc) => !pc.__trace || pc.__traceDone)", timeout=10_000
                )
                traces = await clinic.evaluate("window.__pcs.map((pc) => pc.__trace ?? null)")
                for n, trace in enumerate(traces):
                    for moment in trace or []:
                        print(f"{profile} | {plane} | {parties}: clinic pc{n} start trace {moment}")
            if plane != "mesh-off" and final is not None:
                path = await clinic_file(app, clinic_id)
                # The leg's counts from its connection to the end: the whole call.
                await clinic.wait_for_function(LEG_ENDED, arg=final["index"], timeout=20_000)
                totals = await clinic.evaluate(LEG_TOTALS, final["index"])
                at_end, at_connect = totals["atEnd"], totals["atConnect"]
                source_frames, sent_frames = at_end["camera"] or 0, at_end["sent"]
                if path is not None and source_frames:
                    held = file_frames(path)
                    frames, gaps = held.frames, held.gaps
                    gap = max((size for _, size in gaps), default=0)
                    if args.detail and gaps:
                        where = ", ".join(
                            f"{size} at {at:.1f} s" + (" (a keyframe next)" if key else "")
                            for (at, size), key in zip(gaps, held.keyframe_after, strict=True)
                        )
                        print(
                            f"{profile} | {plane} | {parties}: frames missing in the file: {where}",
                            flush=True,
                        )
                    if args.detail:
                        print(
                            f"{profile} | {plane} | {parties}: file {frames} frames, "
                            f"{sum(size for _, size in gaps)} missing in {len(gaps)} gap(s), "
                            f"{held.unread} unread stamp(s), {held.late_steps} late capture "
                            "step(s)",
                            flush=True,
                        )
                    if held.refused:
                        print(
                            f"{profile} | {plane} | {parties}: {held.refused} recorded video "
                            "frame(s) the decoder refused (not counted as recorded)",
                            flush=True,
                        )
                    # The call ends when the doctor clicks "end" (the page tells
                    # the server once the camera's frames until then are encoded:
                    # recording.js flush): the file's frames from the camera's
                    # frame then on (its stamp, read just before) are not the call's.
                    stamp = at_end.get("stamp")
                    kept = held.until(stamp) if stamp is not None else frames
                    after_end = frames - kept
                    # A frame that shows an earlier frame's picture is not the
                    # camera's frame recorded.
                    kept -= len(held.wrong)
                    if held.wrong:
                        at = ", ".join(f"{t:.2f}" for t in held.wrong)
                        print(
                            f"{profile} | {plane} | {parties}: {len(held.wrong)} frame(s) "
                            f"showing an earlier frame's picture, at {at} s",
                            flush=True,
                        )
                    if args.detail:
                        after = "end stamp unread" if stamp is None else f"{after_end} after"
                        wait = totals["stampWait"]
                        waited = (
                            "" if wait is None else f" (the frame read came {wait:.0f} ms after)"
                        )
                        print(
                            f"{profile} | {plane} | {parties}: file frames: {after} the end{waited}"
                        )
                        # Where the file ends against that frame: 0 frames short,
                        # every frame the camera gave before it is in the file.
                        short = None if stamp is None else held.short_of(stamp)
                        if short is not None:
                            print(
                                f"{profile} | {plane} | {parties}: file ends {short} frame(s) "
                                "short of the camera's frame read at the end"
                            )
                        # Where the file begins against the camera's frame read
                        # just after the leg sent its first: a few frames before
                        # it (the read comes later); after it, the start was lost.
                        begun = totals["firstStamp"]
                        if begun is not None and held.places:
                            offset = clip_offset(held.places[0] - begun)
                            print(
                                f"{profile} | {plane} | {parties}: file begins {offset:+d} "
                                "frame(s) from the camera's frame read as the leg sent its first"
                            )
                        wait = totals["attachWait"]
                        if wait is not None:
                            print(
                                f"{profile} | {plane} | {parties}: the leg's camera attached "
                                f'{wait:.0f} ms after "connected"'
                            )
                    setup = None
                    if at_connect is not None and at_connect["camera"] is not None:
                        setup = row.setup_frames = at_connect["camera"]
                        row.connected_pct = 100 * kept / max(source_frames - setup, 1)
                    row.recorded_pct = 100 * kept / max(source_frames, 1)
                    first = totals["atFirst"]
                    if first is not None and first["camera"] is not None:
                        if setup is not None:
                            row.start_frames = first["camera"] - setup
                        sending = source_frames - first["camera"] + first["sent"]
                        row.sending_pct = 100 * kept / max(sending, 1)
                    row.of_sent_pct = 100 * kept / max(sent_frames, 1)
                    row.max_gap, row.min_width = gap, held.narrowest
    return row


async def clinic_file(app: web.Application, participant: str) -> Path | None:
    """The clinic's finished recording (waits for the finalize after the end)."""
    service = app[RECORDING]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in sorted(service.root.rglob(f"{participant}-part*")):
            if path.suffix in (".webm", ".mp4"):
                return path
        await asyncio.sleep(0.2)  # the file appears when the finalize ends
    return None


def fmt(value: float | int | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    head = (
        "profile",
        "plane",
        "n",
        "up s",
        "live kbit/s",
        "encoder kbit/s",
        "fps",
        "freezes",
        "width",
        "conceal %",
        "conceal ev",
        "ms/ev",
        "leg kbit/s",
        "recorded %",
        "set-up frames",
        "since connected %",
        "start frames",
        "since first sent %",
        "of sent %",
        "sent of camera %",
        "max gap",
        "min width",
        "uplink path",
    )
    print(" | ".join(head))
    for r in rows:
        if r.error:
            print(f"{r.profile} | {r.plane} | {r.parties} | {r.error}")
            continue
        print(
            " | ".join(
                [
                    r.profile,
                    r.plane,
                    str(r.parties),
                    fmt(r.up_s, ".1f"),
                    fmt(r.kbps),
                    fmt(r.encoder_kbps),
                    fmt(r.fps, ".1f"),
                    str(r.freezes),
                    str(r.width),
                    fmt(r.conceal_pct, ".2f"),
                    str(r.conceal_events),
                    fmt(r.conceal_ms, ".0f"),
                    fmt(r.leg_kbps),
                    fmt(r.recorded_pct, ".2f"),
                    fmt(r.setup_frames),
                    fmt(r.connected_pct, ".2f"),
                    fmt(r.start_frames),
                    fmt(r.sending_pct, ".2f"),
                    fmt(r.of_sent_pct, ".2f"),
                    fmt(r.encoded_pct, ".2f"),
                    fmt(r.max_gap),
                    fmt(r.min_width),
                    r.path,
                ]
            ),
            flush=True,
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", default="clean,1m,1m-5loss-150ms,1m-10loss-300ms")
    parser.add_argument("--planes", default="mesh-off,mesh-rec,relay")
    parser.add_argument("--parties", default="2,4")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=1, help="calls per cell of the table")
    parser.add_argument(
        "--hospital-camera",
        default="320x240",
        help="the hospital pages' camera clip, WxH (the clinic's is 640x480; 640x480 here "
        "too was the old rig, whose four pages took both of this machine's cores)",
    )
    parser.add_argument("--keep", type=Path, help="copy each call's data directory here")
    parser.add_argument(
        "--detail", action="store_true", help="print the viewer's freezes, NACKs, PLIs"
    )
    parser.add_argument(
        "--media-workers",
        type=int,
        default=0,
        help="relay and record in this many media worker processes (default 0: in the "
        "web process, on asyncio's loop)",
    )
    parser.add_argument(
        "--precall",
        action="store_true",
        help="the clinic runs the pre-call check over its link before each call (what it "
        "measured is printed)",
    )
    parser.add_argument(
        "--clinic-cpu",
        default="0",
        help="the CPU the clinic's browser has to itself, everything else running on the "
        "others (a PC of the clinic's own); 'none': every process shares every CPU",
    )
    parser.add_argument(
        "--chromium-arg",
        action="append",
        default=[],
        help="one more command-line switch for every page's Chromium (repeatable), e.g. "
        "--chromium-arg=--force-fieldtrials=WebRTC-CongestionWindow/QueueSize:350,"
        "MinBitrate:30000,DropFrame:false/ (the README's congestion-window trial)",
    )
    parser.add_argument(
        "--start-bitrate",
        type=lambda kbps: int(kbps) * 1000,
        help="kbit/s the recorder's answers ask the pages to start at (the setting "
        "start_bitrate; default its default, 800)",
    )
    parser.add_argument(
        "--ended-by",
        choices=("clinic", "hospital"),
        default="clinic",
        help='who clicks "end": the clinic\'s doctor, or the first specialist (the '
        "clinic's file is checked against its camera's frame at that click either way)",
    )
    parser.add_argument(
        "--start-trace",
        action="store_true",
        help="print the clinic's encoder through its leg's first 2.5 s: camera frames, "
        "frames encoded, keyframes, encode time, frames sent, target (the README's start)",
    )
    args = parser.parse_args()
    args.clinic_cpu = clinic_cpu(args.clinic_cpu)
    from playwright.async_api import async_playwright

    if args.detail:
        # What the recorder's ULPFEC rebuilt of each leg, how long the relay's
        # viewers were asked to hold its video, how long each leg's end
        # waited for its last missing packets (logged as it ends), a leg
        # that took its keys before its DTLS handshake's end, why each
        # keyframe was asked for, and why the video frames the file lacks
        # went missing.
        handler = logging.StreamHandler(sys.stdout)
        handler.addFilter(
            lambda record: any(
                part in str(record.msg)
                for part in (
                    "ULPFEC",
                    " end: ",
                    "relay hold",
                    "handshake's end",
                    "keyframe asked",
                    "frames lost",
                )
            )
        )
        for name in ("media.recorder", "media.leg", "media.early"):
            logging.getLogger(name).addHandler(handler)
            logging.getLogger(name).setLevel(logging.INFO)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="township-") as name:
        tmp = Path(name)
        clip = tmp / "camera.y4m"
        make_clip(clip)
        hospital_clip = clip
        if args.hospital_camera != f"{WIDTH}x{HEIGHT}":
            hospital_clip = tmp / "hospital-camera.y4m"
            width, height = (int(x) for x in args.hospital_camera.split("x"))
            make_clip(hospital_clip, (width, height))
        print(f"cameras: clinic {WIDTH}x{HEIGHT}, hospital {args.hospital_camera}, {FPS} fps")
        if args.clinic_cpu is None:
            print("CPUs: every process shares every CPU")
        else:
            print(f"CPUs: the clinic's browser on {args.clinic_cpu}, the rest on {cpu_list()}")
        async with async_playwright() as pw:
            for profile in args.profiles.split(","):
                for parties in (int(p) for p in args.parties.split(",")):
                    cells = itertools.product(args.planes.split(","), range(args.repeat))
                    for plane, n in cells:
                        run_dir = tmp / f"{profile}-{plane}-{parties}-{n}"
                        row = await one_call(
                            pw, run_dir, (clip, hospital_clip), profile, plane, parties, args
                        )
                        rows.append(row)
                        print_table([row])
                        if args.keep:
                            shutil.copytree(run_dir, args.keep / run_dir.name, dirs_exist_ok=True)
                        shutil.rmtree(run_dir, ignore_errors=True)
    print()
    print_table(rows)
    summary(rows)


def summary(rows: list[Row]) -> None:
    def kbps(plane: str, received: bool = False) -> float | None:
        found = [
            r.kbps if received else r.encoder_kbps
            for r in rows
            if r.profile == "1m-5loss-150ms" and r.parties == 2 and r.plane == plane and not r.error
        ]
        known = [k for k in found if k is not None]
        return statistics.median(known) if known else None

    base, relay, old = kbps("mesh-off"), kbps("relay"), kbps("mesh-rec")
    got_base, got_relay = kbps("mesh-off", True), kbps("relay", True)
    # The recording's share of the camera's frames over the whole call, from
    # the leg's connection up (the worst relay call), and from the camera's
    # first frame on that connection (its set-up included).
    relayed = [r for r in rows if r.plane == "relay" and not r.error]
    recorded = [r.connected_pct for r in relayed if r.connected_pct is not None]
    whole = [r.recorded_pct for r in relayed if r.recorded_pct is not None]
    x = f"{100 * relay / base:.0f}" if base and relay is not None else "-"
    x_old = f"{100 * old / base:.0f}" if base and old is not None else "-"
    y = f"{min(recorded):.1f}" if recorded else "-"
    # The call-up of every call of a profile and plane (a call with no video: none).
    cells = sorted(rows, key=lambda r: (r.profile, r.plane))
    for (profile, plane), group in itertools.groupby(cells, key=lambda r: (r.profile, r.plane)):
        calls = list(group)
        times = sorted(r.up_s for r in calls if not r.error)
        parts = [f"{len(calls)} call(s)"]
        if times:
            parts.append(f"median {statistics.median(times):.1f} s, slowest {times[-1]:.1f} s")
        if len(times) < len(calls):
            parts.append(f"{len(calls) - len(times)} with no video")
        print(f"call up {profile} {plane}: " + ", ".join(parts))
    print(f"(old plane, mesh + recording leg: {x_old}% of without)")

    def spread(counts: list[int | None]) -> str:
        known = [n for n in counts if n is not None]
        low, high = min(known, default=0), max(known, default=0)
        return f"{low}" if low == high else f"{low}-{high}"

    if whole:
        print(
            f"(recorded frames counting the camera's frames before the leg connected, "
            f"{spread([r.setup_frames for r in relayed])} a call: {min(whole):.1f}%)"
        )
    sending = [r.sending_pct for r in relayed if r.sending_pct is not None]
    if sending:
        print(
            f"(recorded frames from the leg's first frame sent to the end: {min(sending):.1f}%; "
            f"the camera's frames from the leg's connection to its first frame sent, "
            f"{spread([r.start_frames for r in relayed])} a call)"
        )
    if got_base and got_relay is not None:
        print(
            f"(received by the specialist's page: relay {got_relay:.0f} kbit/s of media, "
            f"mesh {got_base:.0f} kbit/s with its FEC packets: {100 * got_relay / got_base:.0f}%)"
        )
    print(
        f"township: live bitrate with recording >= {x}% of without at 1 Mbit/s + 5% loss; "
        f"recorded frames {y}%"
    )


if __name__ == "__main__":
    asyncio.run(main())
