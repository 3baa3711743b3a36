"""A recording leg's keys before its DTLS handshake has ended.

The recorder answers as the DTLS client. Chromium, the server, is done with its
handshake once the client's last flight (its Finished) arrives, and sends media
at once; the client is done only once the server's last flight arrives. When
that one datagram is lost, OpenSSL sends its own again after a fixed 1 s (2 s
the second time), and until then aiortc can neither decrypt what the page sends
nor send anything back: the packets lost meanwhile are asked for (NACK) a
second late, when the page may no longer have them, and the relay's viewers wait
that second for their first picture (the README's "Where a call-up goes").

Yet the client knows the keys as soon as it has sent its Finished: the SRTP keys
are exported from the master secret, which both sides hold by then. A page that
sends SRTP has received that Finished. So when the leg's first SRTP packet comes
while the handshake still runs, ``start`` checks the page's certificate
against the fingerprint its offer names (as aiortc does at the end), derives
the keys, and keeps them only if that packet decrypts with them (its
authentication tag proves the key). What is left unchecked is the page's own
Finished; its key exchange, signed with that certificate's key, was checked
when it came. From then on the leg decrypts, records,
relays and answers (NACK, PLI, receiver reports) as if connected; the
handshake's end keeps these sessions, so their packet counters run on.
"""

from __future__ import annotations

import logging
from typing import Any

import pylibsrtp
from aiortc import RTCDtlsTransport
from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS, State, certificate_digest
from aiortc.rtp import is_rtcp
from OpenSSL import SSL

log = logging.getLogger(__name__)

_LABEL = b"EXTRACTOR-dtls_srtp"


def _peer_matches(ssl: SSL.Connection, remote: Any) -> bool:
    """Whether the page's certificate is the one its offer's fingerprints name
    (``RTCDtlsTransport._validate_peer_identity``, without failing the transport)."""
    certificate = ssl.get_peer_certificate(as_cryptography=True)
    if certificate is None:
        return False
    supported = [f for f in remote.fingerprints if f.algorithm.lower() in X509_DIGEST_ALGORITHMS]
    return bool(supported) and all(
        f.value.upper() == certificate_digest(certificate, f.algorithm.lower()) for f in supported
    )


def _receive_key(dtls: RTCDtlsTransport, ssl: SSL.Connection) -> tuple[bytes, int] | None:
    """The client's receive key and its libsrtp profile, as ``_setup_srtp`` derives them."""
    selected = ssl.get_selected_srtp_profile()
    profile = next((p for p in dtls._srtp_profiles if p.openssl_profile == selected), None)
    if profile is None:
        return None
    try:
        view = ssl.export_keying_material(_LABEL, 2 * (profile.key_length + profile.salt_length))
    except SSL.Error:
        return None
    return profile.get_key_and_salt(view, 1), profile.libsrtp_profile


def start(dtls: RTCDtlsTransport, remote: Any, packet: bytes) -> bool:
    """Give ``dtls`` its SRTP sessions now, if ``packet`` (SRTP from the page, come
    while this side's handshake runs) proves the keys; whether it did.

    ``remote``: the page's DTLS parameters (the fingerprints of its offer).
    """
    ssl = dtls._ssl
    if dtls._role != "client" or dtls._state != State.CONNECTING or ssl is None:
        return False
    if not _peer_matches(ssl, remote):
        return False
    found = _receive_key(dtls, ssl)
    if found is None:
        return False
    key, profile = found
    probe = pylibsrtp.Session(
        pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    )
    try:
        probe.unprotect(packet)
    except pylibsrtp.Error:
        return False  # not the keys yet (the master secret is not known)
    dtls._setup_srtp()  # aiortc's own sessions, from the same keys
    if getattr(dtls, "_rx_srtp", None) is None:
        return False
    # The handshake's end keeps these sessions (a new one would start its
    # SRTCP index again, and the page would take what follows for replays).
    setattr(dtls, "_setup_srtp", _keep)  # noqa: B010 - this instance
    send = dtls._send_rtp

    async def send_early(data: bytes) -> None:
        if dtls._state != State.CONNECTING:
            await send(data)
            return
        tx = dtls._tx_srtp
        protected = tx.protect_rtcp(data) if is_rtcp(data) else tx.protect(data)
        await dtls.transport._send(protected)

    setattr(dtls, "_send_rtp", send_early)  # noqa: B010 - this instance
    log.info("DTLS keys before the handshake's end: the page's media is taken now")
    return True


def _keep() -> None:
    """``_setup_srtp`` once ``start`` has set the sessions up: nothing to do."""
