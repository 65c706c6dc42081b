#!/usr/bin/env bash
# CI for the example plugin package, as its author would run it: install it, run its tests,
# `bench check` it, train its model through the entry point and again as a --plugin file, and
# check that each result.json names the plugin (distribution and version, or file and sha256).
# Offline: no dependencies are fetched, no build isolation. Leaves the venv as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."
package=examples/csra-plugin
module="$package/csra_plugin.py"
work=$(mktemp -d)
trap 'pip uninstall -q -y multilabel-bench-csra >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

pip install -q --no-deps --no-build-isolation -e "$package"
python -m pytest -q -p no:cacheprovider "$package"
bench check --plugin csra

# A 96-image manifest dataset rendered by the shapes generator: the runs test the plugin's
# path through the harness, not the model, so one epoch of three batches is enough.
python - "$work/data" <<'PY'
import csv
import sys
from pathlib import Path

from plugins.datasets.shapes import CLASSES, render

root = Path(sys.argv[1])
root.mkdir(parents=True)
with open(root / "manifest.csv", "w", newline="") as stream:
    writer = csv.writer(stream)
    writer.writerow(["image", "labels", "split"])
    for split, count in (("train", 64), ("test", 32)):
        for index in range(count):
            image, classes = render(split, index)
            image.save(root / f"{split}{index:03d}.png")
            writer.writerow([f"{split}{index:03d}.png", "|".join(CLASSES[c] for c in classes), split])
PY
run=(bench run --dataset manifest --data-root "$work/data/manifest.csv" --model csra-resnet18 --protocol smoke
     --epochs 1 --size 32 --device cpu --pretrained none --quiet --out "$work/runs")
"${run[@]}" --run-id entry-point

pip uninstall -q -y multilabel-bench-csra
bench check --plugin "$module" --component csra-resnet18
"${run[@]}" --run-id file --plugin "$module"

python - "$work/runs" "$package" "$module" <<'PY'
import hashlib
import json
import sys
import tomllib
from pathlib import Path

runs, package, module = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
version = tomllib.loads((package / "pyproject.toml").read_text())["project"]["version"]
installed = json.loads((runs / "entry-point" / "result.json").read_text())["model"]["plugin"]
assert (installed["source"], installed["distribution"], installed["distribution_version"]) == (
    "distribution", "multilabel-bench-csra", version), installed
loaded = json.loads((runs / "file" / "result.json").read_text())["model"]["plugin"]
sha256 = hashlib.sha256(module.read_bytes()).hexdigest()
assert (loaded["source"], loaded["path"], loaded["sha256"]) == ("file", str(module.resolve()), sha256), loaded
print(f"result.json names the plugin: multilabel-bench-csra {version}; {module} sha256 {sha256[:12]}…")
PY
