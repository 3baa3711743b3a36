"""Encryption at rest: a chunked AEAD file format for attachments and recordings.

Why chunks: a video player seeks with HTTP Range requests and a PDF viewer
fetches a large file in parts. Each chunk is sealed on its own, so a range is
served by decrypting only the chunks it touches, never the whole file.

Layout of a sealed file (all integers big-endian)::

    fixed header (48 bytes, authenticated in every chunk and in the key wrap)
      magic "TCSEAL" | version 1 (u8) | cipher id (u8)
      chunk size (u32) | plaintext size (u64)
      file id (16 random bytes) | nonce prefix (8 random bytes) | reserved (4)
    key slot (the only part key rotation rewrites)
      key id (8 bytes) | wrap nonce (12) | wrapped data key (16 or 32) + tag (16)
    chunks: ceil(size / chunk size) of them (one empty chunk for an empty file),
      each ciphertext of its plaintext length followed by a 16-byte GCM tag

* Each file has its own random **data key** (AES-256: 32 bytes; SM4: 16 bytes).
  Chunk ``i`` is sealed with nonce = nonce prefix || ``i`` (u32) and
  AAD = fixed header || ``i`` (u32) || final flag (u8, 1 on the last chunk). The
  fixed header carries the file id and the plaintext size, so a chunk moved to
  another place, another file, or a file cut short or grown fails to decrypt.
* The data key is **wrapped** with the cipher of the file under a key-encryption
  key derived from the master key (HKDF-SHA256, info names the cipher), with
  AAD = fixed header || key id: a key slot copied onto another file does not open.
  The key id (HKDF of the master key, 8 bytes) names which master key wrapped it;
  it does not reveal the key.
* **Rotation re-wraps**: it decrypts the data key with the old master key and
  wraps it under the new one; the bulk ciphertext is copied unchanged (the file
  is rewritten to a temporary name and renamed over the old one, so a crash
  leaves either the old or the new file, never a torn header). Data keys are
  never stored unwrapped, so retiring a master key is what rotation is for; the
  data itself is not re-encrypted.
* The cipher (``aes-256-gcm`` or ``sm4-gcm``) is chosen for new files by a
  setting and recorded per file, so files of both kinds are read side by side.
  SM4-GCM comes from OpenSSL through ``cryptography`` (SM4 is a 128-bit cipher).

Files that are not sealed (written before encryption was turned on, or with it
off) are read as they are; ``reseal`` seals them. Everything here is blocking
file I/O and CPU work: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"TCSEAL"
VERSION = 1
CHUNK = 64 * 1024
TAG = 16
NONCE = 12
KEY_ID = 8
FIXED = struct.Struct(">6sBBIQ16s8s4s")  # 48 bytes
CIPHERS = {"aes-256-gcm": 1, "sm4-gcm": 2}
CIPHER_NAMES = {v: k for k, v in CIPHERS.items()}
DATA_KEY = {1: 32, 2: 16}
MASTER_KEY = 32


class SealError(Exception):
    """A sealed file cannot be opened: damaged, tampered with, or the key is unknown."""


class Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes: ...


class _Sm4Gcm:
    """SM4 in GCM mode with the same interface as ``AESGCM``."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        enc = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad or b"")
        out = enc.update(data) + enc.finalize()
        return out + enc.tag

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        if len(data) < TAG:
            raise InvalidTag()
        dec = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, data[-TAG:])).decryptor()
        dec.authenticate_additional_data(aad or b"")
        return dec.update(data[:-TAG]) + dec.finalize()


def make_aead(cipher: int, key: bytes) -> Aead:
    return AESGCM(key) if cipher == 1 else _Sm4Gcm(key)


def sm4_available() -> bool:
    """Whether the OpenSSL under ``cryptography`` offers SM4-GCM."""
    try:
        _Sm4Gcm(bytes(16)).encrypt(bytes(NONCE), b"", None)
    except Exception:  # UnsupportedAlgorithm, or a build without SM4
        return False
    return True


def parse_key(text: str | bytes) -> bytes:
    """A master key from its base64 text (or 32 raw bytes, as a key file may hold).

    Raises:
        ValueError: not 32 bytes once decoded.
    """
    if isinstance(text, bytes) and len(text) == MASTER_KEY:
        return text
    raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    raw = raw.strip()
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("an encryption key is base64 of 32 bytes") from exc
    if len(key) != MASTER_KEY:
        raise ValueError("an encryption key is base64 of 32 bytes")
    return key


def new_key() -> str:
    """A fresh master key, as base64 text."""
    return base64.b64encode(os.urandom(MASTER_KEY)).decode()


def key_id(master: bytes) -> bytes:
    """The 8-byte name of a master key (a one-way derivation: it reveals nothing)."""
    return HKDF(hashes.SHA256(), KEY_ID, None, b"teleconsult/key-id").derive(master)


def _kek(master: bytes, cipher: int) -> Aead:
    info = b"teleconsult/kek/" + CIPHER_NAMES[cipher].encode()
    return make_aead(cipher, HKDF(hashes.SHA256(), DATA_KEY[cipher], None, info).derive(master))


@dataclass(frozen=True)
class Keyring:
    """The master keys: the first seals new files, all of them open old ones.

    Args:
        keys: master keys, current first (older ones stay until rotation is done).
        cipher: ``aes-256-gcm`` or ``sm4-gcm``, for newly sealed files.
    """

    keys: Sequence[bytes]
    cipher: str = "aes-256-gcm"

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs at least one key")
        if self.cipher not in CIPHERS:
            raise ValueError(f"unknown cipher {self.cipher}")
        if any(len(k) != MASTER_KEY for k in self.keys):
            raise ValueError("master keys are 32 bytes")

    @property
    def current_id(self) -> bytes:
        """Key id of the key that seals new files."""
        return key_id(self.keys[0])

    def find(self, kid: bytes) -> bytes | None:
        """The master key with this id, if the ring holds it."""
        return next((k for k in self.keys if key_id(k) == kid), None)

    def __repr__(self) -> str:
        return f"Keyring(<{len(self.keys)} key(s)>, cipher={self.cipher!r})"


@dataclass(frozen=True)
class Header:
    """A parsed header; ``fixed`` is the authenticated part."""

    fixed: bytes
    cipher: int
    chunk: int
    size: int
    nonce_prefix: bytes
    key_id: bytes
    wrap_nonce: bytes
    wrapped: bytes

    @property
    def length(self) -> int:
        """Bytes before the first chunk."""
        return header_length(self.cipher)

    @property
    def chunks(self) -> int:
        """Number of chunks (at least one)."""
        return max(1, -(-self.size // self.chunk))

    def slot(self) -> bytes:
        """The key slot as stored."""
        return self.key_id + self.wrap_nonce + self.wrapped

    def data_key(self, keyring: Keyring) -> bytes:
        """Unwrap the data key with the ring's matching master key."""
        master = keyring.find(self.key_id)
        if master is None:
            raise SealError(f"sealed under key {self.key_id.hex()}, which is not configured")
        try:
            return _kek(master, self.cipher).decrypt(
                self.wrap_nonce, self.wrapped, self.fixed + self.key_id
            )
        except InvalidTag as exc:
            raise SealError("the key slot does not verify (tampered with)") from exc


def header_length(cipher: int) -> int:
    """Fixed header plus key slot for this cipher."""
    return FIXED.size + KEY_ID + NONCE + DATA_KEY[cipher] + TAG


def _wrap(keyring: Keyring, fixed: bytes, cipher: int, data_key: bytes) -> bytes:
    kid = keyring.current_id
    nonce = os.urandom(NONCE)
    wrapped = _kek(keyring.keys[0], cipher).encrypt(nonce, data_key, fixed + kid)
    return kid + nonce + wrapped


def read_header(fh: IO[bytes]) -> Header | None:
    """The header of a sealed file, or None if the file is not sealed."""
    fh.seek(0)
    fixed = fh.read(FIXED.size)
    if len(fixed) < FIXED.size or not fixed.startswith(MAGIC):
        return None
    _magic, version, cipher, chunk, size, _fid, prefix, _ = FIXED.unpack(fixed)
    if version != VERSION or cipher not in DATA_KEY or not 0 < chunk <= 16 * 1024 * 1024:
        raise SealError("unknown sealed-file version or cipher")
    slot = fh.read(header_length(cipher) - FIXED.size)
    if len(slot) != header_length(cipher) - FIXED.size:
        raise SealError("sealed file cut short in its header")
    return Header(
        fixed=fixed,
        cipher=cipher,
        chunk=chunk,
        size=size,
        nonce_prefix=prefix,
        key_id=slot[:KEY_ID],
        wrap_nonce=slot[KEY_ID : KEY_ID + NONCE],
        wrapped=slot[KEY_ID + NONCE :],
    )


def is_sealed(path: Path) -> bool:
    """Whether ``path`` is a sealed file (by its magic)."""
    with path.open("rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def _chunk_aad(fixed: bytes, index: int, final: bool) -> bytes:
    return fixed + struct.pack(">IB", index, final)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def seal_stream(src: IO[bytes], dst: IO[bytes], size: int, keyring: Keyring) -> None:
    """Seal ``size`` bytes read from ``src`` into ``dst`` (a fresh data key).

    Raises:
        SealError: ``src`` ended before ``size`` bytes.
    """
    cipher = CIPHERS[keyring.cipher]
    data_key = os.urandom(DATA_KEY[cipher])
    prefix = os.urandom(8)
    fixed = FIXED.pack(MAGIC, VERSION, cipher, CHUNK, size, os.urandom(16), prefix, bytes(4))
    dst.write(fixed + _wrap(keyring, fixed, cipher, data_key))
    aead = make_aead(cipher, data_key)
    chunks = max(1, -(-size // CHUNK))
    for index in range(chunks):
        want = min(CHUNK, size - index * CHUNK)
        block = src.read(want)
        if len(block) != want:
            raise SealError("the source changed while it was sealed")
        final = index == chunks - 1
        dst.write(aead.encrypt(_nonce(prefix, index), block, _chunk_aad(fixed, index, final)))


def _replace_durably(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TEMP_SUFFIX = ".sealing"


def _temp_beside(path: Path) -> Path:
    # A unique name: the server and ``keys rotate`` may seal the same file at once.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMP_SUFFIX)
    os.close(fd)
    return Path(name)


def leftover_temps(directory: Path) -> list[Path]:
    """Temporary files of sealing or re-wrapping interrupted by a crash (safe to delete)."""
    return sorted(directory.rglob("*" + TEMP_SUFFIX)) if directory.exists() else []


def seal_file(path: Path, keyring: Keyring) -> bool:
    """Seal a plaintext file in place (through a temporary file and a rename).

    Returns:
        False if the file was sealed already (nothing done).
    """
    with path.open("rb") as src:
        if read_header(src) is not None:
            return False
        src.seek(0)
        size = os.fstat(src.fileno()).st_size
        tmp = _temp_beside(path)
        try:
            with tmp.open("wb") as dst:
                seal_stream(src, dst, size, keyring)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _replace_durably(tmp, path)
    return True


def rewrap_file(path: Path, keyring: Keyring) -> bool:
    """Re-wrap a sealed file's data key under the ring's current key.

    The ciphertext is copied unchanged into a temporary file with the new key
    slot, which then replaces the file (a crash leaves the old or the new one).

    Returns:
        False if it was wrapped under the current key already.

    Raises:
        SealError: not sealed, or sealed under a key the ring does not hold.
    """
    with path.open("rb") as src:
        header = read_header(src)
        if header is None:
            raise SealError("not a sealed file")
        if header.key_id == keyring.current_id:
            return False
        data_key = header.data_key(keyring)
        tmp = _temp_beside(path)
        try:
            with tmp.open("wb") as dst:
                dst.write(header.fixed + _wrap(keyring, header.fixed, header.cipher, data_key))
                src.seek(header.length)
                while block := src.read(1024 * 1024):
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _replace_durably(tmp, path)
    return True


class SealedFile(io.RawIOBase):
    """A sealed file read as its plaintext: seekable, decrypting only the chunks read.

    Any chunk that fails to authenticate raises ``SealError`` when it is read.
    """

    def __init__(self, path: Path, keyring: Keyring) -> None:
        """Open ``path`` and unwrap its data key.

        Raises:
            SealError: not sealed, damaged header, or an unknown key.
        """
        super().__init__()
        self._fh = path.open("rb")
        try:
            header = read_header(self._fh)
            if header is None:
                raise SealError("not a sealed file")
            self.header = header
            self._aead = make_aead(header.cipher, header.data_key(keyring))
            on_disk = os.fstat(self._fh.fileno()).st_size
            if on_disk != header.length + header.size + header.chunks * TAG:
                raise SealError("sealed file has the wrong length (cut short or grown)")
        except BaseException:
            self._fh.close()
            raise
        self.size = header.size
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def chunk(self, index: int) -> bytes:
        """The plaintext of chunk ``index`` (authenticated)."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        h = self.header
        length = min(h.chunk, h.size - index * h.chunk)
        self._fh.seek(h.length + index * (h.chunk + TAG))
        sealed = self._fh.read(length + TAG)
        final = index == h.chunks - 1
        try:
            plain = self._aead.decrypt(
                _nonce(h.nonce_prefix, index), sealed, _chunk_aad(h.fixed, index, final)
            )
        except InvalidTag as exc:
            raise SealError(f"chunk {index} does not verify (tampered with or damaged)") from exc
        self._cached = (index, plain)
        return plain

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._pos >= self.size:
            return 0
        index, within = divmod(self._pos, self.header.chunk)
        plain = self.chunk(index)[within : within + len(buffer)]
        buffer[: len(plain)] = plain
        self._pos += len(plain)
        return len(plain)

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_plain(path: Path, keyring: Keyring | None) -> BinaryIO:
    """Open a stored file for reading its plaintext, sealed or not.

    Raises:
        SealError: the file is sealed but no key is configured, or it is damaged.
    """
    with path.open("rb") as probe:
        sealed = probe.read(len(MAGIC)) == MAGIC
    if not sealed:
        return path.open("rb")
    if keyring is None:
        raise SealError("the file is encrypted and no encryption key is configured")
    return io.BufferedReader(SealedFile(path, keyring), buffer_size=CHUNK)


def plain_size(fh: BinaryIO) -> int:
    """Plaintext length of a file opened with ``open_plain``."""
    return fh.seek(0, io.SEEK_END)


def read_range(fh: BinaryIO, start: int, count: int, block: int = 1024 * 1024) -> Iterator[bytes]:
    """Plaintext bytes ``start`` .. ``start + count`` in blocks of at most ``block``."""
    fh.seek(start)
    left = count
    while left > 0:
        data = fh.read(min(block, left))
        if not data:
            return
        left -= len(data)
        yield data


def plain_sha256(path: Path, keyring: Keyring | None) -> str:
    """SHA-256 of a stored file's plaintext (every chunk authenticated on the way)."""
    digest = hashlib.sha256()
    with open_plain(path, keyring) as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
