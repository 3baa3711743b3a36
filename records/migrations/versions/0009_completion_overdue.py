"""event kind completion_overdue

Revision ID: 0009
Revises: 0008

A consultation that passes its completion deadline (issue 11, item 3: an
opinion signed or a referral made within 3 working days of the request, 12 h
for emergencies) is marked on the timeline with ``completion_overdue``; the
CHECK on ``consultation_events.kind`` lists it from here on (copied by batch
mode on SQLite, as in 0005, 0006 and 0008).
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# 0006's and 0008's module names start with a digit: imported by name.
_v6 = importlib.import_module("records.migrations.versions.0006_recording_interrupted")
_v8 = importlib.import_module("records.migrations.versions.0008_precall_checks")

BEFORE = _v8.AFTER
AFTER = (*BEFORE, "completion_overdue")


def upgrade() -> None:
    _v6._replace(AFTER)


def downgrade() -> None:
    # The older CHECK refuses these entries; the deadline check puts them back
    # (once each) after the next upgrade, since the consultations are still late.
    op.execute(sa.text("DELETE FROM consultation_events WHERE kind = 'completion_overdue'"))
    _v6._replace(BEFORE)
