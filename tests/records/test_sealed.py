"""The sealed file format: round trips, random access, and what tampering does."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from records import sealed, sealed_values
from records.files import FileStore
from records.sealed import CHUNK, TAG, Keyring, SealError
from records.sealed_store import SealingFileStore

CIPHERS = ["aes-256-gcm", "sm4-gcm"]
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17]


def ring(cipher: str = "aes-256-gcm", *older: bytes) -> Keyring:
    return Keyring([os.urandom(32), *older], cipher)


def sealed_copy(tmp_path: Path, data: bytes, keyring: Keyring, name: str = "f") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    assert sealed.seal_file(path, keyring)
    return path


def test_sm4_is_offered_by_the_installed_cryptography() -> None:
    # The setting sm4-gcm is tested below; if this fails, the build lost SM4.
    assert sealed.sm4_available()


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("size", SIZES)
def test_round_trip_and_any_range(tmp_path: Path, cipher: str, size: int) -> None:
    keyring = ring(cipher)
    data = os.urandom(size)
    path = sealed_copy(tmp_path, data, keyring)
    on_disk = path.read_bytes()
    assert on_disk.startswith(sealed.MAGIC)
    if size >= 32:
        assert data[:32] not in on_disk
    with sealed.open_plain(path, keyring) as fh:
        assert sealed.plain_size(fh) == size
        for start, stop in [(0, size), (size // 2, size), (max(size - 3, 0), size), (1, 2)]:
            stop = min(stop, size)
            start = min(start, stop)
            got = b"".join(sealed.read_range(fh, start, stop - start, block=1000))
            assert got == data[start:stop], (start, stop)
    assert sealed.plain_sha256(path, keyring) == hashlib.sha256(data).hexdigest()


def test_a_plaintext_file_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.write_bytes(b"%PDF-1.4 hello")
    assert not sealed.is_sealed(path)
    with sealed.open_plain(path, None) as fh:
        assert fh.read() == b"%PDF-1.4 hello"


def test_the_bytes_on_disk_give_nothing_away(tmp_path: Path) -> None:
    secret = "患者 张三 身份证 110101199003074518".encode() * 5000
    path = sealed_copy(tmp_path, secret, ring())
    on_disk = path.read_bytes()
    assert "张三".encode() not in on_disk and b"110101199003074518" not in on_disk
    # 210,000 bytes: 4 chunks, each with its tag
    assert len(on_disk) == sealed.header_length(1) + len(secret) + 4 * TAG


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("cipher", CIPHERS)
def test_a_flipped_bit_fails_its_chunk_only(tmp_path: Path, cipher: str) -> None:
    keyring = ring(cipher)
    data = os.urandom(3 * CHUNK)
    path = sealed_copy(tmp_path, data, keyring)
    header = sealed.header_length(sealed.CIPHERS[cipher])
    flip(path, header + (CHUNK + TAG) + 100)  # inside chunk 1
    with sealed.open_plain(path, keyring) as fh:
        assert b"".join(sealed.read_range(fh, 0, CHUNK)) == data[:CHUNK]
        with pytest.raises(SealError, match="chunk 1"):
            b"".join(sealed.read_range(fh, CHUNK, 10))
    with pytest.raises(SealError):
        sealed.plain_sha256(path, keyring)


def test_chunks_cannot_be_reordered(tmp_path: Path) -> None:
    keyring = ring()
    data = os.urandom(2 * CHUNK) + b"tail"
    path = sealed_copy(tmp_path, data, keyring)
    raw = path.read_bytes()
    h, c = sealed.header_length(1), CHUNK + TAG
    swapped = raw[:h] + raw[h + c : h + 2 * c] + raw[h : h + c] + raw[h + 2 * c :]
    path.write_bytes(swapped)
    with pytest.raises(SealError, match="chunk 0"):
        sealed.plain_sha256(path, keyring)


def test_a_file_cut_short_or_grown_is_refused(tmp_path: Path) -> None:
    keyring = ring()
    data = os.urandom(2 * CHUNK)
    path = sealed_copy(tmp_path, data, keyring)
    raw = path.read_bytes()
    for damaged in (raw[: -(CHUNK + TAG)], raw + raw[-(CHUNK + TAG) :]):
        path.write_bytes(damaged)
        with pytest.raises(SealError, match="wrong length"):
            sealed.open_plain(path, keyring)


def test_a_changed_size_in_the_header_fails_every_chunk_and_the_key(tmp_path: Path) -> None:
    # Claim one chunk fewer and cut the file to match: the header is in every AAD.
    keyring = ring()
    path = sealed_copy(tmp_path, os.urandom(2 * CHUNK), keyring)
    raw = bytearray(path.read_bytes())
    raw[12:20] = CHUNK.to_bytes(8, "big")
    path.write_bytes(bytes(raw[: -(CHUNK + TAG)]))
    with pytest.raises(SealError, match="key slot"):
        sealed.open_plain(path, keyring)


def test_a_key_slot_copied_from_another_file_does_not_open(tmp_path: Path) -> None:
    keyring = ring()
    a = sealed_copy(tmp_path, os.urandom(100), keyring, "a")
    b = sealed_copy(tmp_path, os.urandom(100), keyring, "b")
    h, fixed = sealed.header_length(1), sealed.FIXED.size
    raw_a, raw_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(raw_a[:fixed] + raw_b[fixed:h] + raw_a[h:])
    with pytest.raises(SealError, match="key slot"):
        sealed.open_plain(a, keyring)


def test_the_wrong_key_is_named_not_guessed(tmp_path: Path) -> None:
    path = sealed_copy(tmp_path, b"x" * 10, ring())
    with pytest.raises(SealError, match="not configured"):
        sealed.open_plain(path, ring())
    with pytest.raises(SealError, match="no encryption key"):
        sealed.open_plain(path, None)


@pytest.mark.parametrize("cipher", CIPHERS)
def test_rewrap_changes_the_key_slot_only(tmp_path: Path, cipher: str) -> None:
    old = ring(cipher)
    data = os.urandom(2 * CHUNK + 5)
    path = sealed_copy(tmp_path, data, old)
    before = path.read_bytes()
    both = Keyring([os.urandom(32), old.keys[0]], cipher)
    assert sealed.rewrap_file(path, both)
    assert not sealed.rewrap_file(path, both)  # already current: resumable
    after = path.read_bytes()
    h = sealed.header_length(sealed.CIPHERS[cipher])
    assert after[h:] == before[h:]  # the bulk ciphertext is not re-encrypted
    assert after[: sealed.FIXED.size] == before[: sealed.FIXED.size]
    new_only = Keyring([both.keys[0]], cipher)
    assert sealed.plain_sha256(path, new_only) == hashlib.sha256(data).hexdigest()
    with pytest.raises(SealError, match="not configured"):
        sealed.open_plain(path, old)
    assert not list(tmp_path.glob("*" + sealed.TEMP_SUFFIX))


def test_keys_parse_from_base64_and_refuse_anything_else() -> None:
    key = sealed.new_key()
    assert len(sealed.parse_key(key)) == 32
    assert sealed.parse_key(key.replace("+", "-").replace("/", "_").rstrip("=")) == (
        sealed.parse_key(key)
    )
    for bad in ("", "c2hvcnQ=", "not base64 at all!!" * 3):
        with pytest.raises(ValueError, match="32 bytes"):
            sealed.parse_key(bad)
    assert "Keyring(<1 key(s)>" in repr(Keyring([sealed.parse_key(key)]))


def test_the_sealing_store_keeps_plaintext_addresses_and_no_plaintext(tmp_path: Path) -> None:
    keyring = ring()
    store = SealingFileStore(tmp_path / "files", tmp_path / "incoming", keyring=keyring)
    data = b"%PDF-1.4\n" + os.urandom(5000)
    sha = store.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    path = store.path_for(sha)
    assert sealed.is_sealed(path) and data[9:100] not in path.read_bytes()
    assert store.put_bytes(data) == sha  # stored once
    assert sealed.plain_sha256(path, keyring) == sha
    assert not list((tmp_path / "incoming").iterdir())
    # A store without encryption reads the same tree's plaintext files as before.
    plain = FileStore(tmp_path / "files", tmp_path / "incoming")
    assert plain.has(sha)


def test_a_sealed_value_opens_only_in_its_context_and_under_its_key() -> None:
    ring = sealed.Keyring([bytes(range(32))])
    text = sealed_values.seal_value(b"JBSWY3DPEHPK3PXP", ring, b"totp:a")
    assert text.startswith("sealed:1:") and "JBSWY3DP" not in text
    assert sealed_values.open_value(text, ring, b"totp:a") == b"JBSWY3DPEHPK3PXP"
    # Moved onto another account's row, tampered with, or without the key: refused.
    with pytest.raises(sealed.SealError):
        sealed_values.open_value(text, ring, b"totp:b")
    raw = bytearray(base64.b64decode(text.removeprefix("sealed:1:")))
    raw[-1] ^= 1
    with pytest.raises(sealed.SealError):
        sealed_values.open_value(
            "sealed:1:" + base64.b64encode(bytes(raw)).decode(), ring, b"totp:a"
        )
    with pytest.raises(sealed.SealError):
        sealed_values.open_value(text, None, b"totp:a")
    with pytest.raises(sealed.SealError):
        sealed_values.open_value(text, sealed.Keyring([bytes(32)]), b"totp:a")
    # An older key still in the ring opens it (until a reset or re-enrolment).
    rotated = sealed.Keyring([bytes(32), bytes(range(32))])
    assert sealed_values.open_value(text, rotated, b"totp:a") == b"JBSWY3DPEHPK3PXP"
    # Without a key the value is kept marked as plain.
    plain = sealed_values.seal_value(b"JBSWY3DPEHPK3PXP", None, b"totp:a")
    assert sealed_values.open_value(plain, None, b"totp:a") == b"JBSWY3DPEHPK3PXP"
