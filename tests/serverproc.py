"""What tests and benchmarks need to run the real server as a process of its own.

Imported by the tests (``from ..serverproc import ...``) and by the benchmark
scripts, which put the repository root on ``sys.path`` first.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment for ``python -m web.cli`` on ``data_dir``, listening on loopback.

    The caller's own ``TELECONSULT_*`` variables (a developer's config) are left
    out; password hashing is made cheap (the demo logs in many times). Further
    settings are given by name: ``server_env(d, port="8081")`` sets
    ``TELECONSULT_PORT``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    env.update(
        TELECONSULT_DATA_DIR=str(data_dir),
        TELECONSULT_HOST="127.0.0.1",
        TELECONSULT_ARGON2_TIME_COST="1",
        TELECONSULT_ARGON2_MEMORY_KIB="1024",
        TELECONSULT_ARGON2_PARALLELISM="1",
        # No second factor (as in ``make_settings``) unless a test asks for one.
        TELECONSULT_TOTP_ROLES="",
    )
    env.update({f"TELECONSULT_{name.upper()}": value for name, value in settings.items()})
    return env
