"""Settings: the one place that reads the environment.

Every setting is read from ``TELECONSULT_<NAME>`` (upper case) or, when
``TELECONSULT_CONFIG`` names a TOML file, from that file (environment wins).
Each field is documented in README.md; ``tests/web/test_settings_doc.py``
checks that.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from records import report_font, sealed
from records.db import Database
from records.passwords import Passwords
from records.vocab import Role
from signaling.workflow.deadlines import DeadlineRules

ENV_PREFIX = "TELECONSULT_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


class Secret(str):
    """A string whose repr never shows its value (for logs and tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('***')"


NO_SECRET = Secret("")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the app can be configured with; see README.md, "Settings"."""

    data_dir: Path = Path("var")
    database_url: str = ""
    database_pool_size: int = 5
    database_max_overflow: int = 5
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allowed_origins: tuple[str, ...] = ()
    session_ttl_seconds: int = 12 * 3600
    session_cache_seconds: float = 10.0
    login_max_failures: int = 5
    login_lockout_seconds: int = 15 * 60
    totp_roles: tuple[str, ...] = ("clinic_doctor", "specialist")
    reverify_window_seconds: int = 2 * 3600
    escalate_after_routine_seconds: int = 4 * 3600
    escalate_after_urgent_seconds: int = 30 * 60
    escalate_after_emergency_seconds: int = 5 * 60
    escalation_check_seconds: float = 15.0
    deadline_accept_hours: float = 48.0
    deadline_complete_working_days: int = 3
    deadline_emergency_hours: float = 12.0
    default_locale: str = "zh_CN"
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: Secret = NO_SECRET
    turn_ttl_seconds: int = 3600
    ice_transport_policy: str = "all"
    ice_allowed_networks: tuple[str, ...] = ()
    call_grace_seconds: float = 30.0
    # Several web processes share calls and pushes through this Redis (its URL
    # may carry a password); empty: one process, everything in memory.
    redis_url: Secret = NO_SECRET
    redis_lease_seconds: float = 5.0
    recorder_addresses: tuple[str, ...] = ()
    # One recording worker process per core unless told (0: record in the web process).
    media_workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    media_worker_addresses: tuple[str, ...] = ()
    media_worker_token: Secret = NO_SECRET
    recording_max_bitrate: int = 500_000
    media_plane: str = "relay"
    relay_max_bitrate: int = 1_500_000
    start_bitrate: int = 800_000
    # RED and ULPFEC on the connection that carries each page's camera to the
    # recorder: losses on the uplink repaired without a round trip, for about a
    # third of the video's bitrate (media/ulpfec.py).
    video_fec: bool = True
    # The most a relayed picture is held for the retransmissions of packets
    # lost on its sender's uplink (media/hold.py); 0: never held by the server.
    relay_hold_max_ms: int = 600
    recording_retention_days: int = 1096
    max_upload_bytes: int = 50 * 1024 * 1024
    fhir_import_max_bytes: int = 32 * 1024 * 1024
    fhir_server_url: str = ""
    max_image_pixels: int = 89_478_485
    parser_memory_mb: int = 1536
    clamav_socket: Path | None = None
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 2
    encryption_key: Secret = NO_SECRET
    encryption_key_file: Path | None = None
    encryption_cipher: str = "aes-256-gcm"
    report_font: Path = report_font.DEFAULT_FONT
    public_url: str = ""
    log_format: str = "text"
    metrics_token: Secret = NO_SECRET
    readiness_min_free_mb: int = 1024
    pacs_url: str = ""
    pacs_username: str = ""
    pacs_password: Secret = NO_SECRET
    pacs_timeout_seconds: float = 20.0

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("tls_cert and tls_key must be set together")
        if self.ice_transport_policy not in ("all", "relay"):
            raise SettingsError("ice_transport_policy must be all or relay")
        if self.media_plane not in ("relay", "mesh"):
            raise SettingsError("media_plane must be relay or mesh")
        if self.turn_urls and not self.turn_secret:
            raise SettingsError("turn_urls need turn_secret (coturn's static-auth-secret)")
        if self.recording_retention_days < 1096:
            raise SettingsError(
                "recording_retention_days cannot be under 1096 (3 years, the legal minimum)"
            )
        self._check_media_workers()
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("redis_url must be a redis://, rediss:// or unix:// URL")
        if self.redis_lease_seconds <= 0:
            raise SettingsError("redis_lease_seconds must be positive")
        if self.log_format not in ("text", "json"):
            raise SettingsError("log_format must be text or json")
        if self.default_locale not in ("zh_CN", "en"):
            raise SettingsError("default_locale must be zh_CN or en")
        self._check_encryption()
        unknown_roles = set(self.totp_roles) - {r.value for r in Role}
        if unknown_roles:
            raise SettingsError(f"totp_roles: unknown role(s) {', '.join(sorted(unknown_roles))}")
        if not 0 <= self.relay_hold_max_ms <= 10_000:
            raise SettingsError("relay_hold_max_ms must be between 0 (off) and 10000")
        if self.reverify_window_seconds < 0:
            raise SettingsError("reverify_window_seconds cannot be negative")
        if self.session_cache_seconds < 0:
            raise SettingsError("session_cache_seconds cannot be negative (0: no cache)")
        if self.public_url and (
            not self.public_url.startswith(("https://", "http://"))
            or urlsplit(self.public_url).path not in ("", "/")
            or urlsplit(self.public_url).query
        ):
            raise SettingsError(
                "public_url must be a site's address, as https://consult.example.org"
            )
        if self.pacs_url and (
            not self.pacs_url.startswith(("https://", "http://")) or urlsplit(self.pacs_url).query
        ):
            raise SettingsError(
                "pacs_url must be a DICOMweb root, as https://pacs.example.org/dicom-web/"
            )
        if self.fhir_server_url and not self.fhir_server_url.startswith(("https://", "http://")):
            raise SettingsError("fhir_server_url must be a FHIR server's base URL (https://...)")
        for name in (
            "pacs_timeout_seconds",
            "session_ttl_seconds",
            "database_pool_size",
            "login_max_failures",
            "login_lockout_seconds",
            "max_upload_bytes",
            "fhir_import_max_bytes",
            "max_image_pixels",
            "parser_memory_mb",
            "deadline_accept_hours",
            "deadline_complete_working_days",
            "deadline_emergency_hours",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")

    def _check_media_workers(self) -> None:
        if self.media_workers < 0:
            raise SettingsError("media_workers cannot be negative (0: record in the web process)")
        for address in self.media_worker_addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(f"media_worker_addresses: {address!r} is not host:port")
        if self.media_worker_addresses and not self.media_worker_token:
            # Whoever reaches a worker's port could record and relay through it.
            raise SettingsError("media_worker_addresses need media_worker_token")

    def _check_encryption(self) -> None:
        if self.encryption_key and self.encryption_key_file is not None:
            raise SettingsError("set encryption_key or encryption_key_file, not both")
        if self.encryption_cipher not in sealed.CIPHERS:
            raise SettingsError("encryption_cipher must be aes-256-gcm or sm4-gcm")
        if self.encryption_cipher == "sm4-gcm" and not sealed.sm4_available():
            raise SettingsError("encryption_cipher sm4-gcm: this OpenSSL offers no SM4")
        try:
            _parse_keys(str(self.encryption_key).split(","))
        except ValueError as exc:
            # Never echo the value: it is (or is close to) a secret.
            raise SettingsError(f"encryption_key: {exc}") from None

    def keyring(self) -> sealed.Keyring | None:
        """The master keys for encryption at rest, or None when encryption is off.

        ``encryption_key`` holds one base64 key, or several separated by commas;
        a key file holds one per line (``#`` starts a comment). The first key
        seals new files; the others still open files sealed under them until
        ``teleconsult keys rotate`` has re-wrapped everything.

        Raises:
            SettingsError: the key file is missing, readable by everyone, or
                holds something that is not a key.
        """
        if self.encryption_key_file is not None:
            path = self.encryption_key_file
            try:
                if path.stat().st_mode & 0o007:
                    raise SettingsError(
                        f"encryption_key_file {path} is accessible to every user: chmod 600 it"
                    )
                lines = path.read_text("ascii").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"encryption_key_file {path}: {exc}") from None
            texts = [line.split("#", 1)[0] for line in lines]
        else:
            texts = str(self.encryption_key).split(",")
        try:
            keys = _parse_keys(texts)
        except ValueError as exc:
            raise SettingsError(f"encryption key: {exc}") from None
        if not keys:
            if self.encryption_key_file is not None:
                raise SettingsError(f"encryption_key_file {self.encryption_key_file} has no key")
            return None
        return sealed.Keyring(keys, self.encryption_cipher)

    def passwords(self) -> Passwords:
        """The password hasher these settings configure."""
        return Passwords(
            time_cost=self.argon2_time_cost,
            memory_kib=self.argon2_memory_kib,
            parallelism=self.argon2_parallelism,
        )

    def open_database(self) -> Database:
        """The database, with this process's share of PostgreSQL connections."""
        return Database(
            self.effective_database_url,
            pool_size=self.database_pool_size,
            max_overflow=self.database_max_overflow,
        )

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'teleconsult.sqlite3').resolve()}"

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS (cookies are then marked Secure)."""
        return self.tls_cert is not None

    def deadline_rules(self) -> DeadlineRules:
        """By when consultations must be accepted and completed."""
        return DeadlineRules(
            accept_hours=self.deadline_accept_hours,
            complete_working_days=self.deadline_complete_working_days,
            emergency_hours=self.deadline_emergency_hours,
        )

    def escalate_after(self, urgency: str) -> int:
        """Seconds a request of this urgency may wait before it is escalated."""
        return int(getattr(self, f"escalate_after_{urgency}_seconds"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from a TOML file (``TELECONSULT_CONFIG``), the environment, overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config = env.get(ENV_PREFIX + "CONFIG")
        if config:
            with open(config, "rb") as fh:
                values.update(tomllib.load(fh))
        for f in dataclasses.fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        values.update(overrides)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        hints = get_type_hints(cls)
        return cls(**{k: _coerce(k, hints[k], v) for k, v in values.items()})


def _parse_keys(texts: list[str]) -> list[bytes]:
    return [sealed.parse_key(text) for text in texts if text.strip()]


def _boolean(value: Any) -> bool:
    """A TOML boolean, or an environment variable's text for one."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r} (true or false)")


def _coerce(name: str, hint: Any, value: Any) -> Any:
    text = hint if isinstance(hint, str) else repr(hint)
    try:
        if value is None:
            return None
        if hint is bool:
            return _boolean(value)
        if hint is int:
            return int(value)
        if hint is float:
            return float(value)
        if hint is Path or "Path" in text:
            return Path(value) if value != "" else None
        if hint is Secret:
            return Secret(value)
        if "tuple" in text:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name}: {exc}") from exc
