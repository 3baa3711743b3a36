"""The database: an async SQLAlchemy engine, transactions, migrations.

SQLite allows one writer at a time; rather than let concurrent writers fail with
"database is locked", writes are serialized here with an asyncio lock and reads
go on in parallel (WAL mode). A write is a synchronous function run on the
writer (``run_write``, as datasette's ``execute_write_fn``): it cannot await
anything else while it holds the lock. On PostgreSQL the lock is not taken: the database
serializes what needs it (row locks, conditional updates).

A full disk is recognised here and nowhere else: the driver's error becomes
``records.errors.StorageFull`` (a stable code the API and the call answer with),
logged once when the disk fills and once when there is room again, not with a
traceback for every refused request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from records.errors import StorageFull

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")


@dataclass
class LockWaits:
    """How long writes waited for SQLite's single writer (for ``/metrics``).

    On PostgreSQL no lock is taken here and these stay at zero.
    """

    count: int = 0
    seconds: float = 0.0
    longest: float = 0.0

    def add(self, waited: float) -> None:
        """Count one write that waited ``waited`` seconds for the lock."""
        self.count += 1
        self.seconds += waited
        self.longest = max(self.longest, waited)


# The table a statement writes to, as SQLAlchemy spells writes for SQLite and
# PostgreSQL; a statement of another shape that names a watched table (DDL, a
# write with a WITH clause) counts as writing to it.
_WRITE = re.compile(
    r'\s*(?:(?:INSERT|REPLACE)(?:\s+OR\s+\w+)?\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+"?(\w+)',
    re.IGNORECASE,
)
_NOT_WRITES = ("SELECT", "PRAGMA", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET ")
# Where a connection notes the watches its open transaction moved.
_TOUCHED = "tc_watches_touched"


class Watch:
    """A count of the writes to some tables, for a cache of what they hold.

    ``generation`` moves when a statement writes to one of ``tables`` (of this
    process's database) and again when the connection that ran it goes back to
    the pool, after its transaction ended: an entry cached with the generation
    read before its read began, and found with the same generation, was read
    after every write of this process that could change it. ``after_write``
    callbacks run at that second move (another process is told from there),
    and ``moved`` is also what such a notice from another process calls.
    """

    def __init__(self, tables: Iterable[str]) -> None:
        """Watch writes to ``tables`` (their names in the schema)."""
        self.tables = frozenset(tables)
        self.generation = 0
        self.after_write: list[Callable[[], None]] = []
        names = "|".join(sorted(self.tables))
        self._named = re.compile(rf"\b(?:{names})\b", re.IGNORECASE)

    def moved(self) -> None:
        """What the watched tables hold may have changed: forget what was cached."""
        self.generation += 1

    def written_by(self, statement: str) -> bool:
        """Whether ``statement`` may write to a watched table."""
        if statement.lstrip()[:9].upper().startswith(_NOT_WRITES):
            return False
        match = _WRITE.match(statement)
        if match is not None:
            return match.group(1).lower() in self.tables
        return self._named.search(statement) is not None


class Database:
    """An async engine plus the write discipline described in the module docstring."""

    def __init__(self, url: str, *, pool_size: int = 5, max_overflow: int = 5) -> None:
        """Open (lazily) the database at ``url``.

        Args:
            url: an SQLAlchemy async URL, ``sqlite+aiosqlite:///...`` or
                ``postgresql+asyncpg://...``.
            pool_size: connections this process keeps open to PostgreSQL.
            max_overflow: connections it may open beyond those under load (closed
                again when returned). Every process of a deployment holds up to
                ``pool_size + max_overflow``: their sum must stay under the
                server's ``max_connections``.
        """
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(
                pool_size=pool_size,
                max_overflow=max_overflow,
                # A connection the server closed (a restart, a proxy's idle
                # timeout) is noticed when taken from the pool, not by a request.
                pool_pre_ping=True,
            )
        if self.is_sqlite:
            path = sa.engine.make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # SQLite's file through the stdlib driver, for ``run_write_at_once``
        # (opened on first use; None for PostgreSQL and an in-memory database).
        self._at_once: sa.Engine | None = None
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._watches: list[Watch] = []
        self._write_lock = asyncio.Lock()
        self.lock_waits = LockWaits()
        self._full = False  # the last statement was refused for want of space

    def watch(self, *tables: str) -> Watch:
        """Count this process's writes to ``tables`` from now on (see ``Watch``)."""
        watch = Watch(tables)
        if not self._watches:
            engine = self.engine.sync_engine
            sa.event.listen(engine, "before_cursor_execute", self._statement)
            sa.event.listen(engine, "checkin", self._checked_in)
        self._watches.append(watch)
        return watch

    def _statement(self, conn: sa.Connection, _cursor: Any, statement: str, *_rest: Any) -> None:
        for watch in self._watches:
            if watch.written_by(statement):
                watch.moved()
                conn.info.setdefault(_TOUCHED, set()).add(watch)

    def _checked_in(self, _dbapi_conn: Any, record: Any) -> None:
        # The transaction is over (committed or rolled back) when its connection
        # comes back: move again, so a read that began before the commit is not
        # kept as if it had seen it.
        touched: set[Watch] | None = record.info.pop(_TOUCHED, None) if record else None
        self._moved_after_commit(touched or ())

    async def run_write(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` as one write transaction and return what it returns.

        ``work`` is a plain (synchronous) function of a connection: it can run
        SQL and nothing else, so no caller can hold the single writer while it
        waits for the network (a recording's ICE negotiation once held it for
        5 s). Committed when ``work`` returns, rolled back when it raises.
        ``work`` runs in one greenlet; each statement is still a hop to the
        async driver's thread and back. Running it with the stdlib driver on a
        thread of our own would make it one hop, but in the signaling benchmark
        that thread held the GIL against the event loop and every relayed
        message's p99 rose (2.71 ms against 1.30 ms like this).

        Raises:
            StorageFull: the database's disk is full; nothing was written.
        """
        try:
            if self.is_sqlite:
                asked = time.perf_counter()
                async with self._write_lock:
                    self.lock_waits.add(time.perf_counter() - asked)
                    async with self.engine.connect() as conn:
                        result = await conn.run_sync(_immediate, work)
            else:
                async with self.engine.begin() as conn:
                    result = await conn.run_sync(work)
        except sa.exc.DBAPIError as exc:
            if not disk_full(exc):
                raise
            raise self._storage_full(exc) from exc
        self._has_room()
        return result

    async def run_write_at_once(self, work: Callable[[sa.Connection], T]) -> T:
        """``run_write``, with the whole transaction in one hop to a thread.

        For the few writes someone waits for with nothing else to do: an
        audited open of patient data before the page that shows it (the replay
        page's first byte waited for 11 statements, each a hop to the async
        driver's thread and back, 5-8 ms idle and 11-19 ms on a loaded
        machine). On SQLite ``work`` runs on a worker thread with the stdlib
        driver, under the same write lock, so the event loop is woken once. Not
        for every write: that thread holds the GIL against the loop while
        SQLAlchemy builds its statements (see ``run_write``). On PostgreSQL (and
        an in-memory SQLite database) this is ``run_write``.
        """
        engine = self._at_once_engine()
        if engine is None:
            return await self.run_write(work)
        touched: set[Watch] = set()  # filled on the thread, read here once it is done
        try:
            asked = time.perf_counter()
            async with self._write_lock:
                self.lock_waits.add(time.perf_counter() - asked)
                thread = asyncio.ensure_future(
                    asyncio.to_thread(self._write_on_thread, engine, work, touched)
                )
                try:
                    result = await asyncio.shield(thread)
                except asyncio.CancelledError:
                    # The thread cannot be stopped: the lock stays held until
                    # its transaction is over.
                    await asyncio.wait([thread])
                    raise
        except sa.exc.DBAPIError as exc:
            if not disk_full(exc):
                raise
            raise self._storage_full(exc) from exc
        finally:
            # What the async path's listeners do on the loop: a write to a
            # watched table moves it, and again once its transaction is over
            # (committed or rolled back).
            for watch in touched:
                watch.moved()
            self._moved_after_commit(touched)
        self._has_room()
        return result

    def _at_once_engine(self) -> sa.Engine | None:
        if not self.is_sqlite:
            return None
        if self._at_once is None:
            url = self.engine.url
            if url.database in (None, "", ":memory:"):
                return None
            self._at_once = sa.create_engine(
                url.set(drivername="sqlite"),
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            sa.event.listen(self._at_once, "connect", _sqlite_pragmas)
        return self._at_once

    def _write_on_thread(
        self, engine: sa.Engine, work: Callable[[sa.Connection], T], touched: set[Watch]
    ) -> T:
        def statement(_conn: sa.Connection, _cursor: Any, text: str, *_rest: Any) -> None:
            touched.update(w for w in self._watches if w.written_by(text))

        with engine.connect() as conn:
            sa.event.listen(conn, "before_cursor_execute", statement)
            return _immediate(conn, work)

    def _moved_after_commit(self, touched: Iterable[Watch]) -> None:
        for watch in touched:
            watch.moved()
            for callback in watch.after_write:
                try:
                    callback()
                except Exception:
                    log.exception("a callback after a write to %s failed", sorted(watch.tables))

    async def run_read(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` (a synchronous function of a connection) in a read transaction.

        Raises:
            StorageFull: the database's disk is full (as for ``run_write``).
        """
        try:
            async with self.engine.connect() as conn:
                return await conn.run_sync(work)
        except sa.exc.DBAPIError as exc:
            if not disk_full(exc):
                raise
            raise self._storage_full(exc) from exc

    def _storage_full(self, exc: sa.exc.DBAPIError) -> StorageFull:
        # Only this condition of the server is turned into a refusal; any other
        # database error goes on as it is (a bug report, with its traceback).
        if not self._full:
            self._full = True
            log.error("the database's disk is full; refusing what must be written: %s", exc.orig)
        return StorageFull("the server's storage is full; nothing can be opened or saved")

    def _has_room(self) -> None:
        if self._full:
            self._full = False
            log.warning("the database's disk has room again")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for ad-hoc reads in tests and commands (services use ``run_read``)."""
        async with self.engine.connect() as conn:
            yield conn

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration, once however many processes ask.

        Several processes starting together (web processes, media workers, a
        ``db upgrade`` run by hand) each call this. The migration runs in one
        transaction that first takes a lock: PostgreSQL's advisory lock, SQLite's
        write lock (``BEGIN IMMEDIATE``). The others wait for it, then find the
        schema at head and do nothing; a failed migration leaves nothing half done.
        """
        if self.is_sqlite:
            async with self.engine.connect() as conn:
                await conn.run_sync(_immediate, _upgrade)
        else:
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade_locked)

    async def ping(self) -> None:
        """Run one trivial query (readiness); raises what the database raises."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self._at_once is not None:
            self._at_once.dispose()


# PostgreSQL's SQLSTATE for "disk full" (class 53, insufficient resources);
# asyncpg raises it as DiskFullError and SQLAlchemy keeps it as ``sqlstate``.
PG_DISK_FULL = "53100"


def disk_full(exc: sa.exc.DBAPIError) -> bool:
    """Whether the database refused a statement because its disk is full.

    SQLite says ``SQLITE_FULL`` ("database or disk is full"), by its result code
    rather than the message (a trigger's ``RAISE`` can say anything); PostgreSQL
    says SQLSTATE 53100.
    """
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == sqlite3.SQLITE_FULL
    return getattr(orig, "sqlstate", None) == PG_DISK_FULL


def upsert(conn: sa.Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ``on_conflict_do_update``/``_do_nothing`` for the connection's database.

    Both databases take ``INSERT ... ON CONFLICT`` (with ``RETURNING``) as one atomic
    statement: on PostgreSQL the conflicting row is locked and the update sees its
    newest committed version, so concurrent increments are never lost.
    """
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def alembic_config() -> Config:
    """Alembic configuration pointing at the bundled migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _immediate(sync_conn: sa.Connection, work: Callable[[sa.Connection], T]) -> T:
    sync_conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        result = work(sync_conn)
    except BaseException:
        sync_conn.rollback()
        raise
    sync_conn.commit()
    return result


# The advisory lock's key ("tele" in ASCII): any constant the deployment's other
# users of advisory locks do not use.
MIGRATION_LOCK = 0x74656C65


def _upgrade_locked(sync_conn: sa.Connection) -> None:
    # Held to the end of the transaction that runs the migrations.
    sync_conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    _upgrade(sync_conn)


@functools.cache
def _heads() -> frozenset[str]:
    """The newest migration(s): read once per process (the scripts do not change)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _upgrade(sync_conn: sa.Connection) -> None:
    # Already at head (every start but the first): nothing to run, and no need
    # for Alembic to load every migration script again (13 ms a start, paid by
    # every test's app). Read under the same lock as the migration itself.
    if frozenset(MigrationContext.configure(sync_conn).get_current_heads()) == _heads():
        return
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # aiosqlite's driver would otherwise open transactions on its own; SQLAlchemy
    # and the explicit BEGIN IMMEDIATE above decide instead.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
