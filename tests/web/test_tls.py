"""The self-signed certificate: created once, covers the names, loads into ssl."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from web.tls import ensure_self_signed, ssl_context

HOSTS = ["consult.example.org", "localhost", "192.168.10.5", "::1"]


def _load(cert: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.read_bytes())


def test_creates_cert_and_private_key(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, HOSTS)

    assert cert == tmp_path / "tls" / "cert.pem"
    assert key == tmp_path / "tls" / "key.pem"
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_san_holds_dns_names_and_ip_addresses(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path, HOSTS)

    san = _load(cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["consult.example.org", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.168.10.5"),
        ipaddress.ip_address("::1"),
    ]


def test_valid_for_about_a_year(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path, HOSTS)

    lifetime = _load(cert).not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=364) < lifetime <= dt.timedelta(days=366)


def test_reuses_existing_pair(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, HOSTS)
    cert_bytes, key_bytes = cert.read_bytes(), key.read_bytes()

    again = ensure_self_signed(tmp_path, ["localhost"])  # a subset of the SAN

    assert again == (cert, key)
    assert cert.read_bytes() == cert_bytes
    assert key.read_bytes() == key_bytes


def test_regenerates_when_a_name_is_missing(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path, ["localhost"])
    first = cert.read_bytes()

    ensure_self_signed(tmp_path, ["localhost", "10.0.0.7"])

    assert cert.read_bytes() != first


def test_rejects_empty_hostnames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hostname"):
        ensure_self_signed(tmp_path, [])


def test_ssl_context_loads_the_pair(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, HOSTS)

    ctx = ssl_context(cert, key)

    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.get_ca_certs() == []  # a server context: no client CA loaded
