"""A self-signed TLS certificate for demos and closed hospital networks.

Browsers only grant camera and microphone access to secure origins, so a clinic PC
reaching the server by IP address needs HTTPS even on a private network. When no
certificate is configured, the command line calls :func:`ensure_self_signed` and
serves with it; a hospital with its own PKI configures its certificate instead.

The key is an EC P-256 key (small, fast, accepted by every current browser). The
certificate is generated once and reused until it is within 30 days of expiry, so
that browsers which were told to trust it keep doing so across restarts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"


def ensure_self_signed(data_dir: Path, hostnames: list[str]) -> tuple[Path, Path]:
    """Return a self-signed certificate and key under ``data_dir/tls``, creating them if needed.

    An existing pair is reused when the certificate is not expiring within 30 days
    and its SubjectAlternativeName covers every requested name; otherwise a new key
    and certificate are written.

    Args:
        data_dir: The server's data directory; files go to ``data_dir/tls``.
        hostnames: DNS names and IP addresses (v4 or v6) the server is reached by.
            IP addresses become ``IPAddress`` entries, the rest ``DNSName`` entries.

    Returns:
        The paths of the certificate and of the private key, both PEM.

    Raises:
        ValueError: If ``hostnames`` is empty.
    """
    if not hostnames:
        raise ValueError("at least one hostname or IP address is needed")
    tls_dir = data_dir / "tls"
    cert_path = tls_dir / CERT_NAME
    key_path = tls_dir / KEY_NAME
    now = dt.datetime.now(dt.UTC)
    if _reusable(cert_path, key_path, hostnames, now):
        return cert_path, key_path

    tls_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(hostnames[0]))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdate a little: a clinic PC whose clock runs slow must still accept it.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_general_names(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    # The key is created with mode 0600 from the start: never world-readable, not
    # even for the moment between write and chmod.
    _write_private(key_path, key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Build a server-side TLS context (TLS 1.2 or later) from PEM files.

    Args:
        cert: The certificate (chain) in PEM.
        key: The matching private key in PEM, unencrypted.

    Returns:
        An :class:`ssl.SSLContext` ready for ``aiohttp.web.run_app(ssl_context=...)``.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile=cert, keyfile=key)
    return ctx


def _reusable(cert_path: Path, key_path: Path, hostnames: list[str], now: dt.datetime) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    return set(_general_names(hostnames)) <= set(san)


def _general_names(hostnames: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hostnames):  # de-duplicate, keep order
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _common_name(host: str) -> str:
    # CN is limited to 64 characters; browsers only look at the SAN anyway.
    return host[:64]


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)  # in case the file pre-existed with wider permissions
    os.replace(tmp, path)
