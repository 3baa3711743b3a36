"""Fetching a patient's records from the hospital's FHIR server (``fhir_server_url``).

The patient is searched by identifier (``Patient?identifier=system|value``); one
match is fetched whole with ``Patient/{id}/$everything``, whose pages are followed
(``link[relation=next]``) until the server has no more or the bytes read pass
``fhir_import_max_bytes``. The pages' entries become one ``searchset`` Bundle for
the ordinary import. Nothing is sent to the server but the identifier.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from records.vocab import ErrorCode
from web.errors import api_error

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
MAX_PAGES = 100
TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)


class _Reader:
    """GETs of one fetch, counted against the size limit."""

    def __init__(self, session: aiohttp.ClientSession, base: str, limit: int) -> None:
        self.session = session
        self.base = base.rstrip("/")
        self.limit = limit
        self.read = 0

    async def get(self, url: str) -> dict[str, Any]:
        # Only the configured server is followed (a "next" link elsewhere is not).
        if urlsplit(url).netloc != urlsplit(self.base).netloc:
            raise api_error(
                ErrorCode.FHIR_SERVER_UNAVAILABLE, "the FHIR server linked to another host"
            )
        try:
            async with self.session.get(url, headers={"Accept": FHIR_JSON}) as resp:
                if resp.status != 200:
                    raise api_error(
                        ErrorCode.FHIR_SERVER_UNAVAILABLE,
                        f"the FHIR server answered {resp.status}",
                    )
                body = bytearray()
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    body += chunk
                    if self.read + len(body) > self.limit:
                        raise api_error(
                            ErrorCode.TOO_LARGE,
                            f"the patient's records are larger than {self.limit} bytes",
                        )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("fhir server: %s", type(exc).__name__)
            raise api_error(
                ErrorCode.FHIR_SERVER_UNAVAILABLE, "the FHIR server did not answer"
            ) from None
        self.read += len(body)
        try:
            data = json.loads(body)
        except ValueError:
            raise api_error(
                ErrorCode.FHIR_SERVER_UNAVAILABLE, "the FHIR server did not answer with JSON"
            ) from None
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            raise api_error(
                ErrorCode.FHIR_SERVER_UNAVAILABLE, "the FHIR server did not answer with a Bundle"
            )
        return data


def _next(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


async def fetch_everything(base: str, identifier: str, *, limit: int) -> dict[str, Any]:
    """One patient's records from the FHIR server at ``base``, as a searchset Bundle.

    Raises:
        ApiError: ``not_found`` (no single patient with that identifier),
            ``too_large`` or ``fhir_server_unavailable``.
    """
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        reader = _Reader(session, base, limit)
        found = await reader.get(f"{reader.base}/Patient?{urlencode({'identifier': identifier})}")
        patients = [
            e["resource"]
            for e in found.get("entry") or []
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == "Patient"
        ]
        if len(patients) != 1 or not patients[0].get("id"):
            raise api_error(
                ErrorCode.NOT_FOUND,
                f"the FHIR server has {len(patients)} patients with this identifier, not one",
                ["identifier"],
            )
        url: str | None = f"{reader.base}/Patient/{patients[0]['id']}/$everything"
        entries: list[Any] = []
        pages = 0
        while url and pages < MAX_PAGES:
            page = await reader.get(url)
            entries.extend(page.get("entry") or [])
            url = _next(page)
            pages += 1
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}
