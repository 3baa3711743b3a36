"""``teleconsult export``: the supervision export from the command line, and its check.

``export supervision --from D --to D --out FILE`` writes what
``GET /api/supervision/export`` hands out (every consultation on the server,
audited without an account: whoever runs the command operates the server);
``export verify FILE`` checks an archive's signature, each file against the
manifest and the JSON against its schema (exit 1 on any problem).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from records import supervision, supervision_archive
from records.clock import SystemClock
from signaling.workflow.base import Context, NoPushes
from signaling.workflow.deadlines import Deadlines
from signaling.workflow.supervision import FORMATS, SupervisionService
from web.settings import Settings


def add_parser(sub: Any) -> None:
    """Add ``export`` and its two actions to the ``teleconsult`` parser."""
    p_export = sub.add_parser("export", help="supervision export: write one, verify one")
    actions = p_export.add_subparsers(dest="export_action", required=True)
    p_sup = actions.add_parser(
        "supervision", help="write the signed supervision export of a date range"
    )
    p_sup.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
    p_sup.add_argument("--to", dest="last", required=True, help="last day (included), YYYY-MM-DD")
    p_sup.add_argument("--out", required=True, type=Path, help="file to write")
    p_sup.add_argument(
        "--format", choices=FORMATS, default="zip", help="zip (default), json or csv"
    )
    p_ver = actions.add_parser("verify", help="check an export's signature and file hashes")
    p_ver.add_argument("file", type=Path, help="the export's ZIP")
    p_ver.add_argument(
        "--public-key",
        type=Path,
        help="PEM public key to trust (default: the archive's own; compare its fingerprint)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``teleconsult export ...``; the exit status."""
    if args.export_action == "verify":
        return verify(args.file, args.public_key)
    try:
        rng = supervision.parse_range(args.first, args.last)
    except supervision.RangeError as exc:
        print(f"refused: --{exc.field}: {exc}", file=sys.stderr)
        return 2
    result, fingerprint = asyncio.run(_export(settings, rng, args.format))
    fmt, out = args.format, args.out
    if fmt == "zip":
        body = result.zip_bytes()
    else:
        body = result.files[supervision.JSON_NAME if fmt == "json" else supervision.CSV_NAME]
    out.write_bytes(body)
    print(
        f"{result.count} consultation(s) from {rng.first} to {rng.last} written to {out} "
        f"(manifest SHA-256 {result.manifest_sha256}; key {fingerprint})"
    )
    return 0


async def _export(
    settings: Settings, rng: supervision.Range, fmt: str
) -> tuple[supervision_archive.Export, str]:
    db = settings.open_database()
    try:
        await db.upgrade()
        ctx = Context(
            db=db,
            clock=SystemClock(),
            notifier=NoPushes(),
            deadlines=Deadlines(settings.deadline_rules()),
        )
        from web.app import VERSION, supervision_key_path  # as in web.cli_admin

        service = SupervisionService(ctx, key_path=supervision_key_path(settings), version=VERSION)
        result = await service.export(None, rng, fmt=fmt)
        key = await service.key()
    finally:
        await db.close()
    return result, key.fingerprint


def verify(path: Path, public_key: Path | None) -> int:
    """Check an export archive and print what was found; 0 if intact."""
    try:
        data = path.read_bytes()
        expected = public_key.read_bytes() if public_key else None
    except OSError as exc:
        print(f"cannot read: {exc}", file=sys.stderr)
        return 1
    result = supervision_archive.verify_zip(data, expected_key=expected)
    for problem in result.problems:
        print(f"BROKEN: {problem}")
    if not result.ok:
        print(f"{path}: verification FAILED ({len(result.problems)} problem(s))")
        return 1
    span = result.range or {}
    print(
        f"{path}: intact, signed by key {result.fingerprint}; "
        f"{result.count} consultation(s) from {span.get('from')} to {span.get('to')}"
    )
    if public_key is None:
        print("compare the key's fingerprint with the one the hospital registered")
    return 0
