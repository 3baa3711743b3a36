"""The control plane: consultation lifecycle, matching, presence and push.

Talks to clients through the small ``Channel`` interface in ``hub.py`` and so
imports no aiohttp.
"""
