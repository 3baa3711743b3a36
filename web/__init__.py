"""The HTTP edge and composition root: app factory, API, pages, WebSocket, CLI."""
