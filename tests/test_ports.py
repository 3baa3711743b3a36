"""The ports tests start their servers on: each handed out once, none that an
outgoing connection can take meanwhile, and a server is "started" only when
its own process answers.

The cluster test's two web processes were once given one port (a fresh-clone
run: the specialist's socket to "B" dropped without a Close frame when A was
killed). The reproduction is ``test_a_server_whose_port_another_answers_on_is_not_started``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from . import ports
from .ports import ephemeral_low, free_port
from .serverproc import ROOT, ServerProcess, listens


def test_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    given = [free_port() for _ in range(200)]
    assert len(set(given)) == len(given)
    assert all(ports.LOWEST <= p < ephemeral_low() for p in given)
    # What an outgoing connection takes as its own port: in the range, never given.
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as client:
            assert client.getsockname()[1] >= ephemeral_low()


HOLDER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.ports import free_port
print(json.dumps([free_port() for _ in range(50)]), flush=True)
sys.stdin.read()  # holds its ports until told to end
"""


def test_a_port_another_process_of_the_run_holds_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = subprocess.Popen(  # noqa: S603 - this interpreter, our script
        [sys.executable, "-c", HOLDER, str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        mine = free_port()
        assert mine not in held
        os.close(ports._HELD.pop(mine))  # given back, to be drawn again
        # The random draws come up with the other process's ports first.
        draws = iter([*held, mine])
        monkeypatch.setattr(ports.random, "randrange", lambda *_: next(draws))
        assert free_port() == mine
        assert next(draws, None) is None  # every port of the other was drawn, and skipped
    finally:
        holder.communicate("")


async def test_a_server_whose_port_another_answers_on_is_not_started(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'teleconsult.sqlite3'}"
    first = ServerProcess.on_free_port(tmp_path, tmp_path / "first.log", database_url=database)
    second = ServerProcess(dict(first.env), tmp_path / "second.log")  # the same port
    await first.start()
    try:
        assert first.proc is not None and listens(first.proc.pid, first.port)
        # The first answers /api/health on the port at once; the second must not
        # take that for itself, and ends when it cannot bind.
        with pytest.raises(AssertionError, match="address already in use"):
            await second.start()
        assert second.proc is not None and second.proc.returncode not in (None, 0)
    finally:
        await second.stop()
        await first.stop()
