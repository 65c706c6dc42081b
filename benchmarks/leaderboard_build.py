"""Seconds of ``bench leaderboard build`` with many stored bundles: every bundle checked again
(``--check``, and builds before the record of checked bundles) against an incremental build
after one new bundle arrives.

    python benchmarks/leaderboard_build.py [--counts 8,1000,5000] [--images 100] [--classes 10] [--json PATH]

For each count N it stores N synthetic submissions of one configuration (seeds 0 … N−1) in a
fresh leaderboard folder: one real run folder (``tests/runs.make_run``, with run.json and a
40-epoch log) submitted with ``bench leaderboard submit``'s code, and copies of its bundle
with another seed, new random scores (``--images`` × ``--classes``), their re-scored
metrics and content hash, each written as ``submit`` writes it. Then, in one process:

- ``first incremental``: the first ``build``, which checks every bundle and writes the record;
- ``incremental``: after one more bundle is stored, the next ``build`` (checks that one only);
- ``full``: then ``build_outputs(incremental=False)`` on the same N+1 bundles, what
  ``build --check`` and every build before the record did: every bundle read and checked again.

The ratio is full / incremental. Both builds also render the tables, so the ratio is that of
whole builds, not of the checks alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from runs import make_run  # noqa: E402  (the test suite's synthetic run folders)

from harness.leaderboard import build_outputs, submit  # noqa: E402
from harness.leaderboard.bundle import ID_LENGTH, arrays_sha256, read_bundle  # noqa: E402
from harness.leaderboard.store import write_bundle  # noqa: E402
from harness.leaderboard.packed_scores import write_packed  # noqa: E402
from harness.metrics import evaluate  # noqa: E402
from harness.registry import Registry  # noqa: E402

TOY_DATASET = '''
from harness import Dataset, DatasetSpec, hookimpl

@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="toy", load=lambda root, options: Dataset("toy", [], {})))
'''


def store_copy(template, seed: int, rng: np.random.Generator) -> None:
    """Store ``template``'s bundle again as seed ``seed`` with new scores, as ``submit`` would."""
    scores, labels, ids = template.scores()
    scores = (2.0 * (labels == 1) - 1 + rng.normal(0, 1.5, labels.shape)).astype(np.float32)
    bundle = read_bundle(template.path)
    run_id = bundle.record.run_id.replace("seed0", f"seed{seed}")
    metrics = evaluate(scores, labels)
    bundle.result = {**bundle.result, "seed": seed, "run_id": run_id, "metrics": json.loads(json.dumps(metrics))}
    bundle.run = {**bundle.run, "seed": seed, "run_id": run_id}
    bundle.scores_sha256 = arrays_sha256(scores, labels, ids)
    bundle.submitted_scores_sha256 = f"{seed:064x}"
    bundle.content_sha256 = bundle.content()
    bundle.id = bundle.content_sha256[:ID_LENGTH]
    bundle.path = template.path.with_name(f"{run_id}--{bundle.id}.json")
    write_packed(bundle.scores_path, scores, labels, ids)
    write_bundle(bundle.path, bundle)


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(count: int, images: int, classes: int, work: Path) -> dict:
    plugin = work / "toy_dataset.py"
    plugin.write_text(TOY_DATASET)
    registry = Registry((str(plugin),))
    root = work / f"lb-{count}"
    template = submit(make_run(work / f"runs-{count}", seed=0, run_files=True, n_test=images, n_classes=classes),
                      root, registry)
    rng = np.random.default_rng([count, 1])  # never the template's stream (make_run seeds 1000 + seed)
    start = time.perf_counter()
    for seed in range(1, count):
        store_copy(template, seed, rng)
    made = time.perf_counter() - start
    first = timed(lambda: build_outputs(root, baselines=ROOT / "baselines", incremental=True))
    unchanged = timed(lambda: build_outputs(root, baselines=ROOT / "baselines", incremental=True))
    store_copy(template, count, rng)
    incremental = timed(lambda: build_outputs(root, baselines=ROOT / "baselines", incremental=True))
    full = timed(lambda: build_outputs(root, baselines=ROOT / "baselines", incremental=False))
    return {"bundles": count + 1, "seconds_to_make": made, "first_incremental_s": first,
            "unchanged_incremental_s": unchanged, "incremental_one_new_s": incremental, "full_s": full,
            "ratio_full_to_incremental": full / incremental}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="8,1000,5000", help="comma-separated numbers of stored bundles")
    parser.add_argument("--images", type=int, default=100, help="test images per synthetic run")
    parser.add_argument("--classes", type=int, default=10, help="classes per synthetic run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    counts = [int(c) for c in options.counts.split(",")]
    os.environ.setdefault("BENCH_CACHE_DIR", tempfile.mkdtemp(prefix="leaderboard-build-cache-"))
    with tempfile.TemporaryDirectory(prefix="leaderboard-build-") as work:
        rows = [measure(count, options.images, options.classes, Path(work)) for count in counts]
    print(tabulate([[r["bundles"], f"{r['full_s']:.2f}", f"{r['first_incremental_s']:.2f}",
                     f"{r['incremental_one_new_s']:.3f}", f"{r['ratio_full_to_incremental']:.1f}×"] for r in rows],
                   headers=["stored bundles", "full build s", "first incremental s", "incremental, one new s",
                            "full / incremental"]))
    if options.json:
        options.json.write_text(json.dumps({
            "benchmark": "leaderboard_build", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "settings": {"counts": counts, "images": options.images, "classes": options.classes},
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "load_average_at_start": list(os.getloadavg())},
            "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
