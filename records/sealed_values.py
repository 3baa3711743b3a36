"""Encryption at rest for short values kept in database columns (a second
factor's secret): each is sealed whole, with the master keys of ``sealed.py``.

``sealed:1:`` then base64 of cipher id (u8) | key id (8) | nonce (12) |
ciphertext + tag. The key is derived from the master key for values only (HKDF
info names the cipher), and the AAD is the caller's context (the account the
secret belongs to) plus the key id, so a sealed value copied onto another
account's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from records.sealed import (
    CIPHER_NAMES,
    CIPHERS,
    DATA_KEY,
    KEY_ID,
    NONCE,
    Aead,
    Keyring,
    SealError,
    make_aead,
)

VALUE_PREFIX = "sealed:1:"
PLAIN_PREFIX = "plain:"


def _value_key(master: bytes, cipher: int) -> Aead:
    info = b"teleconsult/value/" + CIPHER_NAMES[cipher].encode()
    return make_aead(cipher, HKDF(hashes.SHA256(), DATA_KEY[cipher], None, info).derive(master))


def seal_value(plain: bytes, keyring: Keyring | None, context: bytes) -> str:
    """``plain`` as text for a database column: sealed, or marked plain when there is no key."""
    if keyring is None:
        return PLAIN_PREFIX + base64.b64encode(plain).decode()
    cipher = CIPHERS[keyring.cipher]
    kid = keyring.current_id
    nonce = os.urandom(NONCE)
    sealed_bytes = _value_key(keyring.keys[0], cipher).encrypt(nonce, plain, context + kid)
    blob = bytes([cipher]) + kid + nonce + sealed_bytes
    return VALUE_PREFIX + base64.b64encode(blob).decode()


def open_value(text: str, keyring: Keyring | None, context: bytes) -> bytes:
    """The plain value of ``seal_value``'s text.

    Raises:
        SealError: sealed under a key that is not configured, tampered with, or
            moved from another context.
    """
    try:
        if text.startswith(PLAIN_PREFIX):
            return base64.b64decode(text.removeprefix(PLAIN_PREFIX), validate=True)
        if not text.startswith(VALUE_PREFIX):
            raise SealError("not a sealed value")
        blob = base64.b64decode(text.removeprefix(VALUE_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SealError("a damaged sealed value") from exc
    if keyring is None:
        raise SealError("this value is sealed and no encryption key is configured")
    cipher, kid, nonce = blob[0], blob[1 : 1 + KEY_ID], blob[1 + KEY_ID : 1 + KEY_ID + NONCE]
    master = keyring.find(kid)
    if cipher not in CIPHER_NAMES or master is None:
        raise SealError(f"sealed under key {kid.hex()}, which is not configured")
    try:
        return _value_key(master, cipher).decrypt(nonce, blob[1 + KEY_ID + NONCE :], context + kid)
    except InvalidTag as exc:
        raise SealError("the sealed value does not verify (tampered with)") from exc


def reseal_value(text: str, keyring: Keyring, context: bytes) -> str | None:
    """``text`` sealed under the ring's current key and cipher, or None when it is already.

    A plain value (kept before encryption was turned on) is sealed; a value
    under an older key is opened and sealed again (small: no re-wrapping needed).

    Raises:
        SealError: it cannot be opened (a key that is not configured, tampering).
    """
    if text.startswith(VALUE_PREFIX):
        try:
            blob = base64.b64decode(text.removeprefix(VALUE_PREFIX), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SealError("a damaged sealed value") from exc
        if blob[:1] == bytes([CIPHERS[keyring.cipher]]) and blob[1 : 1 + KEY_ID] == (
            keyring.current_id
        ):
            return None
    return seal_value(open_value(text, keyring, context), keyring, context)
