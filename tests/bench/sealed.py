"""Encryption at rest: MB/s to seal and to read back, against plain copy and hash.

    python tests/bench/sealed.py [MiB]

Prints one row per cipher; the baseline (copy, SHA-256 of plaintext) is measured
in the same run, since only ratios mean much on a shared machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from records import sealed


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    size = mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "plain"
        src.write_bytes(os.urandom(size))
        copy = timed(lambda: shutil.copyfile(src, Path(folder) / "copy"))
        digest = timed(lambda: hashlib.sha256(src.read_bytes()).hexdigest())
        print(
            f"{mib} MiB; baseline: copy {size / copy / 1e6:.0f} MB/s, "
            f"sha256 {size / digest / 1e6:.0f} MB/s"
        )
        print(
            f"{'cipher':<12} {'seal MB/s':>10} {'decrypt+sha256 MB/s':>20} {'1 MiB range ms':>15}"
        )
        for cipher in sealed.CIPHERS:
            keyring = sealed.Keyring([os.urandom(32)], cipher)
            target = Path(folder) / cipher
            shutil.copyfile(src, target)
            seal = timed(lambda: sealed.seal_file(target, keyring))  # noqa: B023
            read = timed(lambda: sealed.plain_sha256(target, keyring))  # noqa: B023

            def one_range() -> None:
                with sealed.open_plain(target, keyring) as fh:  # noqa: B023
                    b"".join(sealed.read_range(fh, size // 2, 1024 * 1024))

            rng = timed(one_range)
            print(
                f"{cipher:<12} {size / seal / 1e6:>10.0f} {size / read / 1e6:>20.0f} "
                f"{rng * 1000:>15.1f}"
            )


if __name__ == "__main__":
    main()
