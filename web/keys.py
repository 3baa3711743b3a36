"""Typed keys for everything the app holds (no string keys, no module globals)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from records.clock import Clock
from records.db import Database
from records.sealed import Keyring
from signaling.call.calls import Calls
from signaling.call.cluster import Cluster
from signaling.call.hub import Hub
from signaling.workflow.admin import AdminService
from signaling.workflow.auth import AuthService, Session
from signaling.workflow.consultations import ConsultationService
from signaling.workflow.directory import DirectoryService
from signaling.workflow.documents import DocumentService
from signaling.workflow.matching import MatchingService
from signaling.workflow.opinion import OpinionService
from signaling.workflow.pacs import PacsService
from signaling.workflow.patients import PatientService
from signaling.workflow.precall import PrecallService
from signaling.workflow.recording import RecordingService
from signaling.workflow.replay import RecordingExports, ReplayService
from signaling.workflow.report import ReportService
from signaling.workflow.second_factor import SecondFactorService
from signaling.workflow.stats import StatsService
from signaling.workflow.summary import SummaryService
from signaling.workflow.supervision import SupervisionService
from web.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DB = web.AppKey("db", Database)
HUB = web.AppKey("hub", Hub)
DIRECTORY = web.AppKey("directory", DirectoryService)
PATIENTS = web.AppKey("patients", PatientService)
CONSULTATIONS = web.AppKey("consultations", ConsultationService)
MATCHING = web.AppKey("matching", MatchingService)
OPINIONS = web.AppKey("opinions", OpinionService)
SUMMARY = web.AppKey("summary", SummaryService)
AUTH = web.AppKey("auth", AuthService)
SECOND_FACTOR = web.AppKey("second_factor", SecondFactorService)
ADMIN = web.AppKey("admin", AdminService)
CALLS = web.AppKey("calls", Calls)
# Present only when several web processes share calls through Redis (``redis_url``).
CLUSTER = web.AppKey("cluster", Cluster)
RECORDING = web.AppKey("recording", RecordingService)
DOCUMENTS = web.AppKey("documents", DocumentService)
PACS = web.AppKey("pacs", PacsService)
REPLAY = web.AppKey("replay", ReplayService)
EXPORTS = web.AppKey("exports", RecordingExports)
PRECALL = web.AppKey("precall", PrecallService)
REPORTS = web.AppKey("reports", ReportService)
SUPERVISION = web.AppKey("supervision", SupervisionService)
STATS = web.AppKey("stats", StatsService)
# The master keys for encryption at rest; absent when encryption is off.
KEYRING = web.AppKey("keyring", Keyring)
# Open WebSockets and the session token behind each: closed on logout, when the
# session lapses, and on shutdown.
SOCKETS = web.AppKey("sockets", dict[web.WebSocketResponse, str])
# The OpenAPI document, built once from the route table (read-only).
OPENAPI = web.AppKey("openapi", Mapping[str, Any])

# Set by the auth middleware on requests that carry a valid session cookie.
SESSION = web.RequestKey("session", Session)
# How long looking the session up took, in milliseconds (Server-Timing on the
# replay page and its recordings: near 0 when it came from memory).
SESSION_MS = web.RequestKey("session_ms", float)
