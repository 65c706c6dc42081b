"""Milliseconds to sign one leaderboard verification and to check one, with ssh-keygen.

    python benchmarks/verification_signing.py [--rounds 20]

Makes a throwaway ed25519 key and an ``allowed_signers`` file in a temporary folder, takes
the first stored verification under ``leaderboards/submissions`` (without its signature),
and times, in alternating order over ``--rounds`` rounds: ``sign`` (``ssh-keygen -Y sign``
alone), ``sign and check the key is listed`` (what ``reproduce --sign`` does once a run
matches) and ``check`` (``find-principals`` and ``verify``: what ``build`` does per
verification). Prints the median and the fastest round of each; each is dominated by
starting the ssh-keygen processes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness.leaderboard.signing import check_signed, sign, sign_verification, signed_message

ROOT = Path(__file__).resolve().parents[1] / "leaderboards"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    stored = sorted(ROOT.glob("submissions/*/*/*.verified.json"))[0]
    verification = {k: v for k, v in json.loads(stored.read_text()).items() if k != "signature"}
    with tempfile.TemporaryDirectory() as folder:
        key, allowed = Path(folder) / "key", Path(folder) / "allowed_signers"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        allowed.write_text("bench " + " ".join(key.with_suffix(".pub").read_text().split()[:2]) + "\n")
        signed = sign_verification(verification, key, allowed, "benchmark")
        work = {
            "sign": lambda: sign(signed_message(verification), key),
            "sign and check the key is listed": lambda: sign_verification(verification, key, allowed, "benchmark"),
            "check": lambda: check_signed(signed, allowed, "benchmark"),
        }
        times: dict[str, list[float]] = {name: [] for name in work}
        for _ in range(rounds):
            for name, call in work.items():
                started = time.perf_counter()
                call()
                times[name].append(1000 * (time.perf_counter() - started))
    print(f"| {stored.name} | median ms | fastest ms |\n| --- | --- | --- |")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} |")


if __name__ == "__main__":
    main()
