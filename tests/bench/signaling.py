"""Signaling benchmark: many joined sockets relaying at a steady rate, against a bare relay.

    python tests/bench/signaling.py [--consultations N] [--rate M] [--seconds S]

Starts one real teleconsult server (``python -m web.cli serve``) on a fresh demo
database, creates N accepted consultations through the API, and has worker
processes join two sockets per consultation (clinic1's and cardio1's) and relay
M messages per second in total for S seconds. The same load runs against a bare
aiohttp relay (``_bare_relay.py``) in the same run, as the baseline. The machine is
shared, so only the comparison is meaningful: both servers stay up with their
sockets joined, and the S seconds of each are split into ``--rounds`` windows run
in ABBA order, so a burst of someone else's work lands on both alike. The last
line is the summary:
``signaling: N sockets, p99 X ms at M msg/s (bare relay p99 Y ms)``.

``--processes P`` runs P teleconsult server processes instead, sharing one
database and one Redis (a ``redis-server`` of its own, ``redis_url``), with the
two participants of every call on different processes (the clinic's socket on
one, which gets the room, the specialist's on the next); their CPU and memory
are summed. The last line is then
``signaling: N sockets over P processes, p99 X ms at M msg/s (bare relay p99 Y ms)``.

``--database postgres`` runs the servers on a throwaway PostgreSQL cluster of
their own (``tests/pgcluster.py``) instead of a SQLite file.

``--py-spy FILE`` samples the teleconsult server with py-spy during its load windows
only (``pip install py-spy``; collapsed stacks, one per line with its count).
``--profile DIR`` runs the teleconsult server under cProfile (``-m cProfile``,
nothing in the product) and writes ``DIR/server.prof``; the server is stopped with
SIGINT so the profile is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from _load import raise_fd_limit, worker_main

from tests.pgcluster import Cluster as PgCluster
from tests.pgcluster import Databases
from tests.ports import free_port
from tests.redisserver import RedisServer
from tests.serverproc import server_env

ROOT = Path(__file__).resolve().parents[2]
BARE = Path(__file__).resolve().parent / "_bare_relay.py"
PASSWORD = "demo1234"  # noqa: S105 - the documented demo password
PATIENT = "刘大爷"  # the demo patient who has consented
HEALTH_TIMEOUT = 60.0
SETUP_CONCURRENCY = 4
READY_TIMEOUT = 900.0
STOP_TIMEOUT = 30.0


@dataclass
class Outcome:
    """What one target achieved."""

    name: str
    sockets: int
    held: int
    sent: int
    received: int
    lost: int
    rate: float
    p50: float
    p99: float
    p999: float
    max: float
    cpu_percent: float
    rss_kib_per_socket: float
    join_seconds: float
    settle_seconds: float
    pushes: int
    errors: dict[str, int]
    by_kind: dict[str, list[float]]
    stored: list[float]  # chat: send -> stored event at the receiver (teleconsult)
    not_stored: int


# -- the server process -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@contextmanager
def server_process(
    cmd: list[str], env: dict[str, str], log: Path, stop: signal.Signals = signal.SIGTERM
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            yield proc
        except BaseException:
            # The temp dir goes away with the log: show its end now.
            out.flush()
            print(f"--- {log.name} (end) ---\n{log.read_text(errors='replace')[-3000:]}")
            raise
        finally:
            if proc.poll() is None:
                proc.send_signal(stop)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(STOP_TIMEOUT)


async def wait_healthy(origin: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with session.get(f"{origin}/api/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server not healthy after {HEALTH_TIMEOUT} s")


# -- setup through the real API ---------------------------------------------------------


@dataclass
class Login:
    cookie: str
    csrf: str
    account_id: str


async def login(session: aiohttp.ClientSession, origin: str, username: str) -> Login:
    async with session.post(
        f"{origin}/api/session",
        json={"username": username, "password": PASSWORD},
        headers={"Origin": origin},
    ) as resp:
        data = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"login {username}: {resp.status} {data}")
        token = resp.cookies["tc_session"].value
    return Login(f"tc_session={token}", data["csrf_token"], data["account"]["id"])


async def api(
    session: aiohttp.ClientSession,
    origin: str,
    user: Login,
    method: str,
    path: str,
    body: Any = None,
) -> Any:
    headers = {"Origin": origin, "Cookie": user.cookie, "X-CSRF-Token": user.csrf}
    async with session.request(method, f"{origin}{path}", json=body, headers=headers) as resp:
        data = await resp.json()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data}")
        return data


async def setup(origin: str, n: int, live: bool = False) -> tuple[Login, Login, list[str]]:
    """Log in clinic1 and cardio1; create and accept ``n`` consultations (and start
    their calls, with ``live``)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        clinic = await login(session, origin, "clinic1")
        cardio = await login(session, origin, "cardio1")
        patients = await api(session, origin, clinic, "GET", "/api/patients")
        patient_id = next(p["id"] for p in patients["patients"] if p["name"] == PATIENT)
        depts = await api(session, origin, clinic, "GET", "/api/departments")
        dept_id = next(d["id"] for d in depts["departments"] if d["code"] == "cardiology")
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one() -> str:
            async with gate:
                created = await api(
                    session,
                    origin,
                    clinic,
                    "POST",
                    "/api/consultations",
                    {
                        "patient_id": patient_id,
                        "department_id": dept_id,
                        "urgency": "routine",
                        "reason": "胸闷两周，心电图ST段改变",
                        "question": "是否需要转上级医院行冠脉造影？",
                    },
                )
                cid: str = created["consultation"]["id"]
                await api(session, origin, cardio, "POST", f"/api/consultations/{cid}/accept", {})
                if live:
                    await api(
                        session, origin, clinic, "POST", f"/api/consultations/{cid}/start", {}
                    )
                return cid

        cids = await asyncio.gather(*(one() for _ in range(n)))
    return clinic, cardio, list(cids)


# -- running the load -------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def receive(conn: Any, expected: str, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError(f"worker sent no {expected} within {timeout:.0f} s")
    kind, payload = conn.recv()
    if kind != expected:
        raise RuntimeError(f"worker: {kind}: {payload}")
    return payload


class Target:
    """One server under test, its load-generator workers, and the numbers gathered."""

    def __init__(self, name: str, pids: list[int], specs: list[dict[str, Any]], ctx: Any) -> None:
        self.name, self.pids, self.specs, self.ctx = name, pids, specs, ctx
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        self.ready: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.cpu = self.wall = 0.0
        self.rss_before = self.rss_after = 0

    def start(self) -> None:
        """Start the workers and wait until every socket has joined and things are quiet."""
        self.rss_before = sum(rss_kib(pid) for pid in self.pids)
        for spec in self.specs:
            parent, child = self.ctx.Pipe()
            proc = self.ctx.Process(target=worker_main, args=(child, spec), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.ready = [receive(p, "ready", READY_TIMEOUT) for p in self.pipes]
        self.rss_after = sum(rss_kib(pid) for pid in self.pids)

    def round(self, seconds: float, spy: str | None) -> None:
        """One load window on every worker at once."""
        sampler = start_py_spy(self.pids[0], seconds, spy) if spy else None
        cpu0, t0 = sum(cpu_seconds(pid) for pid in self.pids), time.perf_counter()
        for p in self.pipes:
            p.send(("go", seconds))
        time.sleep(seconds)
        self.cpu += sum(cpu_seconds(pid) for pid in self.pids) - cpu0
        self.wall += time.perf_counter() - t0
        self.results += [receive(p, "result", seconds + 60) for p in self.pipes]
        if sampler is not None:
            sampler.wait(STOP_TIMEOUT)

    def joined_in(self) -> str:
        return f"{max(r['join_seconds'] for r in self.ready):.1f} s"

    def stop(self) -> None:
        for p in self.pipes:
            with contextlib.suppress(OSError):
                p.send("stop")
            p.close()
        for proc in self.procs:
            proc.join(STOP_TIMEOUT)
            if proc.is_alive():
                proc.terminate()
                proc.join(STOP_TIMEOUT)

    def outcome(self) -> Outcome:
        results, ready = self.results, self.ready
        latencies = [x for r in results for x in r["latencies"]]
        errors: dict[str, int] = {}
        by_kind: dict[str, list[float]] = {}
        for r in results:
            for code, count in r["errors"].items():
                errors[code] = errors.get(code, 0) + count
            for kind, values in r["by_kind"].items():
                by_kind.setdefault(kind, []).extend(values)
        # Workers run their windows side by side: a round lasts as long as its slowest.
        rounds = len(results) // len(self.pipes)
        duration = sum(
            max(r["duration"] for r in results[i * len(self.pipes) : (i + 1) * len(self.pipes)])
            for i in range(rounds)
        )
        received = sum(r["received"] for r in results)
        sockets = sum(r["sockets"] for r in ready)
        return Outcome(
            name=self.name,
            sockets=sockets,
            held=min(
                sum(r["held"] for r in results[i * len(self.pipes) : (i + 1) * len(self.pipes)])
                for i in range(rounds)
            ),
            sent=sum(r["sent"] for r in results),
            received=received,
            lost=sum(r["lost"] for r in results),
            rate=received / duration if duration else 0.0,
            p50=percentile(latencies, 0.50),
            p99=percentile(latencies, 0.99),
            p999=percentile(latencies, 0.999),
            max=max(latencies, default=0.0),
            cpu_percent=100.0 * self.cpu / self.wall if self.wall else 0.0,
            rss_kib_per_socket=(self.rss_after - self.rss_before) / sockets if sockets else 0.0,
            join_seconds=max(r["join_seconds"] for r in ready),
            settle_seconds=max(r["settle_seconds"] for r in ready),
            pushes=sum(r["pushes"] for r in ready),
            errors=errors,
            by_kind=by_kind,
            stored=[x for r in results for x in r["stored"]],
            not_stored=sum(r["not_stored"] for r in results),
        )


def start_py_spy(pid: int, seconds: float, out: str) -> subprocess.Popen[bytes]:
    """Sample the server during a load window (collapsed stacks, one per line with a count).

    ``--nonblocking`` so the samples do not pause the server and skew its latency.
    """
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(math.ceil(seconds))]
    cmd += ["--rate", "250", "--nonblocking", "--threads", "--format", "raw", "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def split(keys: list[str], workers: int) -> list[list[str]]:
    return [keys[i::workers] for i in range(workers) if keys[i::workers]]


def specs_for(
    kind: str,
    ports: list[int],
    keys: list[str],
    sides: tuple[dict[str, str], dict[str, str]],
    args: Any,
) -> list[dict[str, Any]]:
    port = ports[0]
    return [
        {
            "kind": kind,
            "ws_url": f"ws://127.0.0.1:{port}/ws",
            "ws_urls": [f"ws://127.0.0.1:{p}/ws" for p in ports],
            "origin": f"http://127.0.0.1:{port}",
            "clinic": sides[0],
            "cardio": sides[1],
            "keys": part,
            "rate": args.rate / args.workers,
            "seed": i + 1,
        }
        for i, part in enumerate(split(keys, args.workers))
    ]


def teleconsult_servers(
    args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack
) -> list[tuple[subprocess.Popen[bytes], int]]:
    """Real servers on a fresh demo database (``web.cli demo`` then ``web.cli serve``):
    one, or ``--processes`` of them sharing the database and a Redis of their own."""
    settings: dict[str, str] = {}
    if args.database == "postgres":
        # A throwaway cluster (tests/pgcluster.py: fsync and synchronous_commit off,
        # as for the suite), one database in it for the servers.
        cluster = PgCluster()
        cluster.start()
        stack.callback(cluster.stop)
        databases = Databases(cluster.url())
        settings["database_url"] = databases.url(databases.create())
    if args.processes:
        (tmp / "redis").mkdir()
        redis = RedisServer(tmp / "redis")
        redis.start()
        stack.callback(redis.stop)
        settings["redis_url"] = redis.url
        settings["redis_lease_seconds"] = str(args.lease)
    env = server_env(tmp / "data", **settings)
    (tmp / "data").mkdir()
    subprocess.run(
        [sys.executable, "-m", "web.cli", "demo"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    servers = []
    for i in range(max(1, args.processes)):
        port = free_port()
        cmd = [sys.executable, "-m", "web.cli", "serve", "--port", str(port)]
        stop = signal.SIGTERM
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            prof = str(Path(args.profile).resolve() / f"server{i}.prof")
            cmd = [sys.executable, "-m", "cProfile", "-o", prof, *cmd[1:]]
            stop = signal.SIGINT  # KeyboardInterrupt: run_app returns, cProfile writes
        log = tmp / f"teleconsult{i if i else ''}.log"
        proc = stack.enter_context(server_process(cmd, env, log, stop))
        asyncio.run(wait_healthy(f"http://127.0.0.1:{port}", proc))
        servers.append((proc, port))
    return servers


def bare_server(tmp: Path, stack: contextlib.ExitStack) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, str(BARE), "--port", str(port)]
    proc = stack.enter_context(server_process(cmd, dict(os.environ), tmp / "bare.log"))
    asyncio.run(wait_healthy(f"http://127.0.0.1:{port}", proc))
    return proc, port


def run(args: argparse.Namespace, tmp: Path) -> tuple[Outcome, Outcome]:
    ctx = multiprocessing.get_context("spawn")
    with contextlib.ExitStack() as stack:
        servers = teleconsult_servers(args, tmp, stack)
        tport = servers[0][1]
        t0 = time.perf_counter()
        clinic, cardio, cids = asyncio.run(
            setup(f"http://127.0.0.1:{tport}", args.consultations, args.live_first)
        )
        print(f"setup: {len(cids)} consultations in {time.perf_counter() - t0:.1f} s", flush=True)
        sides = (
            {"cookie": clinic.cookie, "id": clinic.account_id},
            {"cookie": cardio.cookie, "id": cardio.account_id},
        )
        tele = Target(
            "teleconsult",
            [proc.pid for proc, _ in servers],
            specs_for("teleconsult", [port for _, port in servers], cids, sides, args),
            ctx,
        )
        stack.callback(tele.stop)
        tele.start()
        bproc, bport = bare_server(tmp, stack)
        pairs = [f"pair{i:06d}" for i in range(args.consultations)]
        anon = ({"cookie": "", "id": "a" * 32}, {"cookie": "", "id": "b" * 32})
        bare = Target("bare relay", [bproc.pid], specs_for("bare", [bport], pairs, anon, args), ctx)
        stack.callback(bare.stop)
        bare.start()
        print(
            f"joined: teleconsult in {tele.joined_in()}, bare relay in {bare.joined_in()}; "
            f"{args.rounds} rounds of {args.seconds / args.rounds:.1f} s each, interleaved",
            flush=True,
        )
        # ABBA order: a slow drift in the machine's load favours neither server.
        for i in range(args.rounds):
            order = (tele, bare) if i % 2 == 0 else (bare, tele)
            for target in order:
                spy = f"{args.py_spy}.{i}" if args.py_spy and target is tele else None
                target.round(args.seconds / args.rounds, spy)
        if args.py_spy:
            with open(args.py_spy, "w") as out:
                for i in range(args.rounds):
                    part = Path(f"{args.py_spy}.{i}")
                    if part.exists():
                        out.write(part.read_text())
                        part.unlink()
        return tele.outcome(), bare.outcome()


def report(outcomes: list[Outcome]) -> None:
    head = (
        f"{'':<12} {'sockets':>7} {'msg/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'p99.9 ms':>8} {'max ms':>7} {'CPU %':>6} {'RSS KiB/socket':>14}"
    )
    print(head)
    for o in outcomes:
        print(
            f"{o.name:<12} {o.sockets:>7} {o.rate:>7.0f} {o.p50:>7.2f} {o.p99:>7.2f} "
            f"{o.p999:>8.2f} {o.max:>7.1f} {o.cpu_percent:>6.1f} {o.rss_kib_per_socket:>14.1f}"
        )
    for o in outcomes:
        print(
            f"{o.name}: sent {o.sent}, delivered {o.received}, lost {o.lost}, "
            f"held at end {o.held}, errors {o.errors or 'none'}, "
            f"join {o.join_seconds:.1f} s (+{o.settle_seconds:.1f} s settle, "
            f"{o.pushes} pushes received while joining)"
        )
        print(
            f"{o.name} by type (n, p50/p99 ms): "
            + ", ".join(
                f"{kind} {len(v)} {percentile(v, 0.5):.2f}/{percentile(v, 0.99):.2f}"
                for kind, v in sorted(o.by_kind.items())
            )
        )
        if o.stored or o.not_stored:
            print(
                f"{o.name} chat on the timeline (send -> stored event at the receiver; "
                f"not in the relay latencies): n {len(o.stored)}, "
                f"p50 {percentile(o.stored, 0.5):.2f} ms, p99 {percentile(o.stored, 0.99):.2f} ms, "
                f"not stored {o.not_stored}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consultations", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="aggregate msg/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per server")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved windows per server")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="teleconsult server processes sharing a Redis (0: one process, no Redis)",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=5.0,
        help="redis_lease_seconds of the processes (a process stalled longer is taken "
        "for dead and its calls move)",
    )
    parser.add_argument(
        "--live-first",
        action="store_true",
        help="start the calls before the sockets join (else each second join takes a "
        "call live and pushes consultation.changed to every socket of both users: "
        "quadratic in the sockets, hours of joining at 10,000)",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the servers' database: a file in the data directory, or a throwaway "
        "PostgreSQL cluster of its own (tests/pgcluster.py)",
    )
    parser.add_argument("--profile", metavar="DIR", help="cProfile the teleconsult server")
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="sample the teleconsult server with py-spy during its load windows",
    )
    args = parser.parse_args()
    raise_fd_limit()
    tmp = Path(tempfile.mkdtemp(prefix="tc-bench-"))
    try:
        print(
            f"load: {args.consultations} consultations, {args.rate:.0f} msg/s, "
            f"{args.seconds:.0f} s per server, {args.workers} workers"
            + (f", {args.processes} teleconsult processes on Redis" if args.processes else "")
            + f", {args.database}",
            flush=True,
        )
        tele, bare = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report([tele, bare])
    ratio = tele.p99 / bare.p99 if bare.p99 else float("inf")
    print(f"p99 ratio teleconsult/bare relay: {ratio:.2f}")
    over = f" over {args.processes} processes" if args.processes else ""
    print(
        f"signaling: {tele.sockets} sockets{over}, p99 {tele.p99:.2f} ms at {tele.rate:.0f} msg/s "
        f"(bare relay p99 {bare.p99:.2f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
