"""Encryption-at-rest settings for tests that run with it off and on (``indirect``)."""

from __future__ import annotations

from typing import Any

from records import sealed
from web.settings import Secret

# One key for the whole run; each cipher the setting offers.
KEY = Secret(sealed.new_key())
ENCRYPTION: dict[str, dict[str, Any]] = {
    "plaintext": {},
    "aes-256-gcm": {"encryption_key": KEY},
    "sm4-gcm": {"encryption_key": KEY, "encryption_cipher": "sm4-gcm"},
}
