"""The supervision export as a signed archive: the manifest (sizes and SHA-256),
the server's Ed25519 signing key, the ZIP and its verification.

What the archive holds (the records, the JSON and CSV, the schema) is made by
``records.supervision``; this module packs and signs it, and checks a received one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from records.canonical import canonical_json
from records.supervision import (
    CSV_NAME,
    FORMAT,
    FORMAT_VERSION,
    JSON_NAME,
    MANIFEST_NAME,
    PUBLIC_KEY_NAME,
    SCHEMA_NAME,
    SCHEMA_PATH,
    SIGNATURE_ALGORITHM,
    SIGNATURE_NAME,
    Producer,
    Range,
    Source,
    csv_bytes,
    document,
    iso,
    json_bytes,
    record,
    schema_errors,
)


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` in hexadecimal."""
    return hashlib.sha256(data).hexdigest()


def manifest(
    files: Mapping[str, bytes],
    *,
    rng: Range,
    producer: Producer,
    generated_at: datetime,
    count: int,
    key_fingerprint: str,
    export_id: str,
) -> dict[str, Any]:
    """The manifest: every file's name, size and SHA-256, and what was exported."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "export_id": export_id,
        "producer": producer.as_json(),
        "generated_at": iso(generated_at),
        "range": rng.as_json(),
        "scope": producer.scope_json(),
        "count": count,
        "files": [
            {"name": name, "size": len(data), "sha256": sha256_hex(data)}
            for name, data in files.items()
        ],
        "signature": {
            "algorithm": SIGNATURE_ALGORITHM,
            "file": SIGNATURE_NAME,
            "signed": MANIFEST_NAME,
            "public_key_file": PUBLIC_KEY_NAME,
            "key_fingerprint": key_fingerprint,
        },
    }


def manifest_bytes(m: Mapping[str, Any]) -> bytes:
    """The manifest's bytes, which are what is signed (canonical JSON)."""
    return canonical_json(m)


# -- the signing key ----------------------------------------------------------------


class SigningKey:
    """The server's Ed25519 key for export manifests, kept as a PEM file (PKCS#8).

    Made on first use with mode 0600 under the data directory. Losing it only
    means the platform must be given the new key's fingerprint; it protects no
    stored data.
    """

    def __init__(self, private: Ed25519PrivateKey) -> None:
        """Wrap a loaded private key."""
        self._private = private

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key at ``path``, made there (readable by the owner only) if absent."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            # Two first exports at once: the first link wins, both use its file.
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            tmp.unlink(missing_ok=True)
            data = path.read_bytes()
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(private)

    @property
    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo), for ``signing-key.pem``."""
        return public_pem(self._private.public_key())

    @property
    def fingerprint(self) -> str:
        """``sha256:`` and the hex SHA-256 of the raw 32-byte public key."""
        return fingerprint(self._private.public_key())

    def sign(self, data: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)


def public_pem(key: Ed25519PublicKey) -> bytes:
    """A public key as PEM (SubjectPublicKeyInfo)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(key: Ed25519PublicKey) -> str:
    """``sha256:`` and the hex SHA-256 of the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ``ValueError`` for anything else."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


# -- the archive and its check --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Export:
    """The files of one export, signed."""

    export_id: str
    files: dict[str, bytes]  # consultations.json, consultations.csv, the schema
    manifest: bytes
    signature: bytes
    public_key: bytes
    count: int

    @property
    def manifest_sha256(self) -> str:
        """The manifest's SHA-256 (what the audit entry keeps)."""
        return sha256_hex(self.manifest)

    def zip_bytes(self) -> bytes:
        """The ZIP the API and the command hand out."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, data in self.files.items():
                z.writestr(name, data)
            z.writestr(MANIFEST_NAME, self.manifest)
            z.writestr(SIGNATURE_NAME, self.signature)
            z.writestr(PUBLIC_KEY_NAME, self.public_key)
        return out.getvalue()


def build(
    sources: Sequence[Source],
    *,
    rng: Range,
    producer: Producer,
    generated_at: datetime,
    key: SigningKey,
    export_id: str,
) -> Export:
    """Make, check against the schema, and sign the export of ``sources``.

    Raises:
        ValueError: the JSON document does not validate (a bug: nothing is handed out).
    """
    records = [record(s, now=generated_at) for s in sources]
    doc = document(records, rng=rng, producer=producer, generated_at=generated_at)
    problems = schema_errors(doc)
    if problems:
        raise ValueError("the export does not match its schema: " + "; ".join(problems[:5]))
    # The schema travels with the data (and is covered by the signature), so the
    # platform validates against the version the export was made for.
    files = {
        JSON_NAME: json_bytes(doc),
        CSV_NAME: csv_bytes(records),
        SCHEMA_NAME: SCHEMA_PATH.read_bytes(),
    }
    m = manifest_bytes(
        manifest(
            files,
            rng=rng,
            producer=producer,
            generated_at=generated_at,
            count=len(records),
            key_fingerprint=key.fingerprint,
            export_id=export_id,
        )
    )
    return Export(
        export_id=export_id,
        files=files,
        manifest=m,
        signature=key.sign(m),
        public_key=key.public_pem,
        count=len(records),
    )


@dataclass
class Verification:
    """What ``verify_zip`` found."""

    problems: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    count: int | None = None
    range: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether the archive is intact and signed by the key it names."""
        return not self.problems


def verify_zip(data: bytes, *, expected_key: bytes | None = None) -> Verification:
    """Check an export archive: the signature over the manifest, each file's size
    and SHA-256 against it, and the JSON against the schema.

    Args:
        data: the ZIP's bytes.
        expected_key: the PEM public key the receiver trusts; without it the
            archive's own ``signing-key.pem`` is used and its fingerprint
            reported, to be compared with the registered one.
    """
    result = Verification()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = set(z.namelist())
            contents = {name: z.read(name) for name in names}
    except (zipfile.BadZipFile, OSError) as exc:
        result.problems.append(f"not a readable ZIP archive: {exc}")
        return result
    for needed in (MANIFEST_NAME, SIGNATURE_NAME, PUBLIC_KEY_NAME):
        if needed not in contents:
            result.problems.append(f"{needed} is missing")
    if result.problems:
        return result
    try:
        key = load_public_key(expected_key or contents[PUBLIC_KEY_NAME])
    except ValueError as exc:
        result.problems.append(f"the public key cannot be read: {exc}")
        return result
    result.fingerprint = fingerprint(key)
    if expected_key is not None:
        try:
            archived = fingerprint(load_public_key(contents[PUBLIC_KEY_NAME]))
        except ValueError:
            archived = "(unreadable)"
        if archived != result.fingerprint:
            result.problems.append(
                f"{PUBLIC_KEY_NAME} is {archived}, not the expected key {result.fingerprint}"
            )
    try:
        key.verify(contents[SIGNATURE_NAME], contents[MANIFEST_NAME])
    except InvalidSignature:
        result.problems.append("the signature does not match manifest.json")
    try:
        m = json.loads(contents[MANIFEST_NAME])
        listed = {f["name"]: f for f in m["files"]}
        result.count = int(m["count"])
        result.range = dict(m["range"])
    except (ValueError, KeyError, TypeError) as exc:
        result.problems.append(f"manifest.json cannot be read: {exc}")
        return result
    for name, entry in sorted(listed.items()):
        if name not in contents:
            result.problems.append(f"{name} is listed in the manifest but missing")
            continue
        body = contents[name]
        if len(body) != entry.get("size") or sha256_hex(body) != entry.get("sha256"):
            result.problems.append(f"{name} does not match its size and SHA-256 in the manifest")
    extra = names - set(listed) - {MANIFEST_NAME, SIGNATURE_NAME, PUBLIC_KEY_NAME}
    for name in sorted(extra):
        result.problems.append(f"{name} is not listed in the manifest")
    if JSON_NAME in contents:
        try:
            errors = schema_errors(json.loads(contents[JSON_NAME]))
        except ValueError as exc:
            errors = [f"not JSON: {exc}"]
        result.problems.extend(f"{JSON_NAME} against the schema: {e}" for e in errors[:5])
    return result
