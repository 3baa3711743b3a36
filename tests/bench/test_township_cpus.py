"""The township benchmark's clinic on a CPU of its own (``--clinic-cpu``).

The benchmark starts each browser through a small script (``wrapper``) in the
side's network namespace; with a CPU list it confines the browser and every
process the browser starts to those CPUs, and the benchmark's own process moves
to the others (``clinic_cpu``). Checked here with ``cat`` in the browser's place,
reading its own scheduling from /proc, in this process's network namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .township import alone_on, clinic_cpu, cpu_list, wrapper

SELF_NS = "/proc/self/ns/net"


def allowed(status: str) -> str:
    [line] = [line for line in status.splitlines() if line.startswith("Cpus_allowed_list:")]
    return line.split(":", 1)[1].strip()


def test_the_wrapper_starts_the_browser_on_the_cpus_and_at_the_nice_it_is_given(
    tmp_path: Path,
) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    script = wrapper(tmp_path / "chromium-clinic", SELF_NS, -5, str(cpus[0]), exe="/bin/cat")
    done = subprocess.run(  # noqa: S603 - our own script
        [str(script), "/proc/self/status", "/proc/self/stat"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert allowed(done.stdout) == str(cpus[0]), done.stdout
    # /proc/self/stat: field 19 is the nice value (after the command in brackets).
    nice = int(done.stdout.rsplit(")", 1)[1].split()[16])
    assert nice == -5, done.stdout  # as root, as nsenter needs
    # Without a CPU list the browser may run anywhere this process may.
    free = wrapper(tmp_path / "chromium-hospital", SELF_NS, 0, exe="/bin/cat")
    done = subprocess.run(  # noqa: S603 - our own script
        [str(free), "/proc/self/status"], capture_output=True, text=True, timeout=10, check=True
    )
    assert allowed(done.stdout) == allowed(Path("/proc/self/status").read_text()), done.stdout


def test_the_benchmark_moves_itself_off_the_clinics_cpu() -> None:
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        assert clinic_cpu("0") is None
        return
    # In a child, so that this test process keeps its CPUs.
    code = (
        "import os, sys, threading\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from township import clinic_cpu, cpu_list\n"
        "t = threading.Thread(target=threading.Event().wait, daemon=True); t.start()\n"
        "cpu = clinic_cpu('0')\n"
        "print(cpu, cpu_list())\n"
        "print(sorted({c for tid in os.listdir('/proc/self/task') "
        "for c in os.sched_getaffinity(int(tid))}))\n"
        "print(clinic_cpu('none'))\n"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    first, threads, none = done.stdout.splitlines()
    rest = sorted(before - {0})
    assert first == f"0 {','.join(map(str, rest))}", done.stdout
    assert threads == str(rest), done.stdout  # every thread, the ones started before too
    assert none == "None", done.stdout
    assert cpu_list() == ",".join(map(str, sorted(before)))  # this process kept its CPUs


def test_a_cpu_the_process_may_not_use_is_refused() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        assert clinic_cpu("4096") is None  # one CPU: nothing to give, nothing to check
        return
    with pytest.raises(SystemExit, match="--clinic-cpu 4096"):
        clinic_cpu("4096")


def test_the_chromium_processes_on_the_clinics_cpu_alone_are_counted(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    before = alone_on(cpu)
    # A "chromium" (sleep under that name) started through the clinic's wrapper.
    sleeper = tmp_path / "chromium"
    shutil.copy("/bin/sleep", sleeper)
    script = wrapper(tmp_path / "chromium-clinic", SELF_NS, 0, str(cpu), exe=str(sleeper))
    process = subprocess.Popen([str(script), "30"])  # noqa: S603 - our own script
    try:
        deadline = time.monotonic() + 10
        while alone_on(cpu) != before + 1:
            assert time.monotonic() < deadline, f"{alone_on(cpu)} on cpu{cpu}, {before} before"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert alone_on(cpu) == before
