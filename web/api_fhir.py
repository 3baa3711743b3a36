"""(being written) API routes of this area; registered by web.app.all_routes()."""

from __future__ import annotations

from web.openapi import Route

ROUTES: tuple[Route, ...] = ()
