"""API of the supervision export (监管数据导出): a signed ZIP, or one of its files."""

from __future__ import annotations

import asyncio

from aiohttp import web

from records import supervision
from signaling.errors import Invalid
from web.auth import actor
from web.keys import SUPERVISION
from web.openapi import Route

DATE = {"type": "string", "format": "date"}
MEDIA_TYPES = {
    "zip": "application/zip",
    "json": "application/json; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


def export_range(request: web.Request) -> supervision.Range:
    """The ``from`` and ``to`` query parameters as a range (400 naming the one at fault)."""
    try:
        return supervision.parse_range(request.query.get("from"), request.query.get("to"))
    except supervision.RangeError as exc:
        raise Invalid(str(exc), fields=(exc.field,)) from None


async def export(request: web.Request) -> web.StreamResponse:
    """The consultations of a date range for the supervision platform (audited)."""
    fmt = request.query.get("format", "zip")
    if fmt not in MEDIA_TYPES:
        raise Invalid("format must be zip, json or csv", fields=("format",))
    rng = export_range(request)
    result = await request.app[SUPERVISION].export(actor(request), rng, fmt=fmt)
    stem = f"supervision-{rng.first.isoformat()}-{rng.last.isoformat()}"
    if fmt == "zip":
        body = await asyncio.to_thread(result.zip_bytes)
    else:
        body = result.files[supervision.JSON_NAME if fmt == "json" else supervision.CSV_NAME]
    return web.Response(
        body=body,
        headers={
            "Content-Type": MEDIA_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="{stem}.{fmt}"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Export-Id": result.export_id,
            "X-Manifest-SHA256": result.manifest_sha256,
        },
    )


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/supervision/export",
        export,
        "Supervision export of a date range: ZIP (JSON, CSV, signed manifest), JSON or CSV",
        tag="supervision",
        query=(
            ("from", DATE),
            ("to", DATE),
            ("format", {"type": "string", "enum": list(MEDIA_TYPES)}),
        ),
    ),
)
