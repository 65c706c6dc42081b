"""What run loggers cost: training images/s with ``--logger csv --logger tensorboard`` (TensorBoard
when installed) against the same run without loggers, in one process, alternating rounds.

    python benchmarks/logger_overhead.py [--size 32] [--epochs 1] [--rounds 2] [--out FILE.json]

It trains the embedded ``shapes`` dataset under ``smoke`` (``smallcnn``) on the CPU, where every
step's loss is read back anyway; on a GPU the loggers read step losses back in groups, at the
NaN check the trainer already makes. Prints the ratio (with / without) per round and their
median, and writes a JSON record; ratios near 1 mean logging costs nothing measurable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
from datetime import datetime, timezone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", help="Write the JSON record here too.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # configured: harness.run draws no bars, prints no epoch lines

    from harness import run

    loggers = ("csv", "tensorboard") if importlib.util.find_spec("tensorboard") else ("csv",)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-loggers-") as scratch:
        for index in range(args.rounds):
            rates = {}
            for label, chosen in (("without", ()), ("with", loggers)):
                record = run(dataset="shapes", protocol="smoke", size=args.size, epochs=args.epochs, device="cpu",
                             out=scratch, run_id=f"{label}-{index}", loggers=chosen)
                rates[label] = record.train_images_per_s
            rounds.append({**rates, "ratio": rates["with"] / rates["without"]})
            print(f"round {index + 1}: {rates['without']:.0f} img/s without, {rates['with']:.0f} with "
                  f"{' + '.join(loggers)}: ratio {rounds[-1]['ratio']:.3f}")
    median = statistics.median(r["ratio"] for r in rounds)
    print(f"median ratio (with / without): {median:.3f}")
    result = {
        "benchmark": "logger_overhead",
        "command": " ".join(["python", *sys.argv]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"size": args.size, "epochs": args.epochs, "loggers": list(loggers)},
        "machine": {"cpu_count": os.cpu_count(), "load_average_at_start": list(os.getloadavg())},
        "rounds": rounds,
        "median_ratio": median,
    }
    if args.out:
        with open(args.out, "w") as stream:
            json.dump(result, stream, indent=2)


if __name__ == "__main__":
    main()
