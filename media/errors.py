"""Errors of the media plane, each with a stable code."""

from __future__ import annotations


class MediaError(Exception):
    """Root of the media errors."""

    code = "media_error"


class SeamBroken(MediaError):
    """aiortc changed under the passthrough seam; see ``media/seam.py``."""

    code = "aiortc_seam_broken"


class RecordingFailed(MediaError):
    """A recording could not be started or written."""

    code = "recording_failed"
