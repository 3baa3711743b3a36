"""Log output: plain text for a terminal, or one JSON object per line for a collector.

Every record gets a ``consultation_id`` attribute (None when the line concerns
no consultation) from ``records.logcontext``; the JSON format writes it as a
field and the text format as ``[c=<id>]``, so an operator can follow one
consultation through the web, signaling and recording lines with one grep.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from records import logcontext

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s:%(consultation_tag)s %(message)s"
# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "consultation_id",
    "consultation_tag",
}


class ConsultationFilter(logging.Filter):
    """Adds the bound consultation (if any) to each record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        cid = getattr(record, "consultation_id", None) or logcontext.consultation_id.get()
        record.consultation_id = cid
        record.consultation_tag = f" [c={cid}]" if cid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        cid = getattr(record, "consultation_id", None)
        if cid:
            entry["consultation_id"] = cid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool)) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def handler_for(log_format: str) -> logging.Handler:
    """A stderr handler in the given format (``text`` or ``json``), with the filter."""
    handler = logging.StreamHandler()
    handler.addFilter(ConsultationFilter())
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    return handler


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Send the root logger's output to stderr in ``log_format`` (the CLI calls this once)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler_for(log_format))
    root.setLevel(level)
