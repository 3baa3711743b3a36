"""Typed keys for everything the app holds (no string keys, no module globals)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from records.clock import Clock
from records.db import Database
from signaling.auth import AuthService, Session
from signaling.calls import Calls
from signaling.documents import DocumentService
from signaling.hub import Hub
from signaling.recording import RecordingService
from signaling.replay import ReplayService
from signaling.service import ConsultationService
from signaling.summary import SummaryService
from web.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DB = web.AppKey("db", Database)
HUB = web.AppKey("hub", Hub)
SERVICE = web.AppKey("service", ConsultationService)
SUMMARY = web.AppKey("summary", SummaryService)
AUTH = web.AppKey("auth", AuthService)
CALLS = web.AppKey("calls", Calls)
RECORDING = web.AppKey("recording", RecordingService)
DOCUMENTS = web.AppKey("documents", DocumentService)
REPLAY = web.AppKey("replay", ReplayService)
# Open WebSockets and the session token behind each: closed on logout, when the
# session lapses, and on shutdown.
SOCKETS = web.AppKey("sockets", dict[web.WebSocketResponse, str])
# The OpenAPI document, built once from the route table.
OPENAPI = web.AppKey("openapi", dict[str, Any])

# Set by the auth middleware on requests that carry a valid session cookie.
SESSION = web.RequestKey("session", Session)
