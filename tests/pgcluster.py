"""A throwaway PostgreSQL cluster for the test suite, and the databases in it.

``TELECONSULT_TEST_DATABASE`` picks the database the suite runs on:

- unset or ``sqlite``: a SQLite file per test (the default);
- ``postgres``: a scratch cluster of Debian's PostgreSQL, initialised in a temporary
  directory, listening only on a Unix socket of its own (trust auth), started once for
  the test session and stopped at its end;
- a ``postgresql+asyncpg://`` URL: an existing server; the suite creates (and drops)
  its own databases there, so the URL's role needs CREATEDB.

On PostgreSQL a template database with the migrations and the demo community is
built once; each test gets ``CREATE DATABASE ... TEMPLATE`` of it, a file copy that
takes about 20 ms (the cluster's files are in memory when the machine has room).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

from .ports import free_port

ENV = "TELECONSULT_TEST_DATABASE"


def _bindir() -> Path:
    """Where Debian keeps the server's programs (the newest version installed)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")


# Where the scratch cluster's files go when the machine has room in memory. Every
# test's database is a copy of the template, some 1,500 files, dropped after the
# test: on ext4 (/tmp here) finding free inodes among so many just freed took
# three quarters of both cores in the kernel (perf: find_inode_bit,
# recently_deleted) and made the PostgreSQL pass twice as long as the SQLite one.
MEMORY_DIR = Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private directory in it
MEMORY_NEEDED = 2 * 1024**3


def _in_memory() -> str | None:
    """The memory file system if it is there with room to spare, else None (the
    temporary directory)."""
    try:
        fs = os.statvfs(MEMORY_DIR)
    except OSError:
        return None
    return str(MEMORY_DIR) if fs.f_bavail * fs.f_frsize >= MEMORY_NEEDED else None


class Cluster:
    """A scratch cluster: ``start()``, ``url(name)``, ``stop()``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="teleconsult-pg-", dir=_in_memory()))
        # Only names the socket file (.s.PGSQL.<port>); a free TCP port keeps it unique.
        self.port = free_port()
        self.bindir = _bindir()
        # initdb refuses to run as root; CI runs as root, so the server runs as the
        # `postgres` account the Debian package creates.
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(  # noqa: S603 - the server's own programs, fixed arguments
            cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def start(self) -> None:
        """initdb and start; returns when the server accepts connections."""
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        data, sock = self.root / "data", self.root
        self._run(
            "initdb",
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        )
        # Durability is worthless for a throwaway cluster; without fsync each test's
        # CREATE DATABASE is a plain file copy.
        options = (
            f"-k {sock} -p {self.port} -c listen_addresses='' -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(data), "-o", options, "-l", str(self.root / "log"), "-w", "start"
        )

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of one database in the cluster (over the Unix socket)."""
        return f"postgresql+asyncpg://postgres@/{database}?host={self.root}&port={self.port}"

    def stop(self) -> None:
        """Stop the server at once and remove its files."""
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class Databases:
    """Creates and drops the suite's databases on one PostgreSQL server."""

    def __init__(self, server_url: str) -> None:
        self.server = sa.engine.make_url(server_url)

    def url(self, database: str) -> str:
        """The URL of ``database`` on the server."""
        return self.server.set(database=database).render_as_string(hide_password=False)

    def _admin(self, *statements: str) -> object:
        """Run ``statements`` in order; returns the first value of the last one's result."""
        import asyncpg  # the `postgres` extra; only needed when the suite runs on it

        params = {
            "user": self.server.username,
            "password": self.server.password,
            "host": self.server.query.get("host") or self.server.host,
            "port": int(self.server.query.get("port") or self.server.port or 5432),
            "database": self.server.database or "postgres",
        }

        async def run() -> object:
            conn = await asyncpg.connect(**params)
            try:
                for statement in statements[:-1]:
                    await conn.execute(statement)
                return await conn.fetchval(statements[-1])
            finally:
                await conn.close()

        # A thread of its own, so this works whether or not an event loop is running.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()

    @functools.cached_property
    def _copy(self) -> str:
        # PostgreSQL 15 copies a template through the WAL, block by block, unless
        # told to copy its files. For the demo template on the scratch cluster
        # (fsync off: the checkpoints a file copy costs are cheap): 36 ms against
        # 20 ms a test in memory, 74 against 39 on ext4. Older servers (a URL
        # given) have only the file copy.
        version = int(str(self._admin("SHOW server_version_num")))
        return " STRATEGY FILE_COPY" if version >= 150000 else ""

    def create(self, *, template: str | None = None) -> str:
        """A new empty (or template-copied) database; returns its name."""
        name = f"t_{uuid.uuid4().hex}"
        suffix = f" TEMPLATE {template}{self._copy}" if template else ""
        self._admin(f"CREATE DATABASE {name}{suffix}")
        return name

    def drop(self, name: str) -> None:
        """Drop a database, closing whatever connections a test left open."""
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
