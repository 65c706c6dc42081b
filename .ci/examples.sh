#!/usr/bin/env bash
# CI for the example plugin packages, as their authors would run it: install each, run its
# tests, `bench check` it, train with it through the entry point and again as a --plugin file,
# and check that each result.json names the plugin (distribution and version, or file and sha256).
# Offline: no dependencies are fetched, no build isolation. Leaves the venv as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'pip uninstall -q -y multilabel-bench-csra multilabel-bench-mlgcn multilabel-bench-asl multilabel-bench-classquery >/dev/null 2>&1 || true
      rm -rf "$work"' EXIT

# A 96-image manifest dataset rendered by the shapes generator: the runs test each plugin's
# path through the harness, not the method, so one epoch of three batches is enough.
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
run=(bench run --dataset manifest --data-root "$work/data/manifest.csv" --protocol smoke
     --epochs 1 --size 32 --device cpu --pretrained none --quiet --out "$work/runs")

# example NAME KIND COMPONENT CHECK RUN-OPTIONS...: the package examples/NAME-plugin (entry point
# NAME, module NAME_plugin.py) provides COMPONENT of KIND (model or loss); CHECK is what
# `bench check` covers through the entry point: "all" components, or COMPONENT only.
example() {
    local name=$1 kind=$2 component=$3 check=$4
    shift 4
    local package="examples/$name-plugin"
    local module="$package/${name}_plugin.py"
    local checked=()
    [[ $check == all ]] || checked=(--component "$component")
    pip install -q --no-deps --no-build-isolation -e "$package"
    python -m pytest -q -p no:cacheprovider "$package"
    bench check --plugin "$name" "${checked[@]}"
    "${run[@]}" "$@" --run-id "$name-entry-point"

    pip uninstall -q -y "multilabel-bench-$name"
    bench check --plugin "$module" --component "$component"
    "${run[@]}" "$@" --run-id "$name-file" --plugin "$module"

    python - "$work/runs" "$name" "$kind" "$package" "$module" <<'PY'
import hashlib
import json
import sys
import tomllib
from pathlib import Path

runs, name, kind, package, module = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5])
distribution = f"multilabel-bench-{name}"
version = tomllib.loads((package / "pyproject.toml").read_text())["project"]["version"]
sha256 = hashlib.sha256(module.read_bytes()).hexdigest()
for run_id, expected in ((f"{name}-entry-point", ("distribution", distribution, version)),
                         (f"{name}-file", ("file", str(module.resolve()), sha256))):
    record = json.loads((runs / run_id / "result.json").read_text())
    plugin = record[kind]["plugin"]
    found = (plugin["source"], plugin["distribution"], plugin["distribution_version"]) if expected[0] == "distribution" \
        else (plugin["source"], plugin["path"], plugin["sha256"])
    assert found == expected, (run_id, plugin)
    if kind == "loss":  # a loss other than the protocol's is a recorded deviation
        assert record["protocol"]["deviations"]["loss"]["plugin"] == plugin, record["protocol"]["deviations"]
print(f"result.json names the plugin: {distribution} {version}; {module} sha256 {sha256[:12]}…")
PY
}

example csra model csra-resnet18 all --model csra-resnet18
example mlgcn model mlgcn-resnet18 one --model mlgcn-resnet18  # resnet50/101 differ only in torchvision's constructor
example asl loss asl all --loss asl

# The package-folder example: vendored method code in a package with a sub-package, a LICENSE
# and a recipe (AdamW, one cycle, EMA). Installed (entry point) and as --plugin path/to/package/,
# each run must record the recipe as a deviation and name the plugin it came from.
package_example() {
    local package=examples/classquery-plugin
    local folder="$package/classquery/"
    local components=(--component classquery-resnet18 --component classquery-adamw)
    pip install -q --no-deps --no-build-isolation -e "$package"
    python -m pytest -q -p no:cacheprovider "$package"
    bench check --plugin classquery "${components[@]}"
    "${run[@]}" --model classquery-resnet18 --recipe classquery-adamw --run-id classquery-entry-point
    pip uninstall -q -y multilabel-bench-classquery
    bench check --plugin "$folder" "${components[@]}"
    "${run[@]}" --model classquery-resnet18 --recipe classquery-adamw --run-id classquery-folder --plugin "$folder"
    python - "$work/runs" <<'PY'
import json
import sys
from pathlib import Path

runs = Path(sys.argv[1])
for run_id, source in (("classquery-entry-point", "distribution"), ("classquery-folder", "directory")):
    record = json.loads((runs / run_id / "result.json").read_text())
    recipe, deviation = record["recipe"], record["protocol"]["deviations"]["recipe"]
    assert (recipe["name"], recipe["plugin"]["source"], recipe["ema_decay"]) == ("classquery-adamw", source, 0.99), recipe
    assert (deviation["used"], deviation["plugin"]) == ("classquery-adamw", recipe["plugin"]), deviation
    assert record["model"]["plugin"] == recipe["plugin"], record["model"]["plugin"]
print("result.json records the classquery-adamw recipe as a deviation, installed and as a package folder")
PY
    # Onto a leaderboard: the package-folder run is submitted (its files stored by sha256),
    # trained again from the bundle's copy of the package and verified under a throwaway
    # maintainer key, and its row lands in the deviations section naming the recipe.
    local board="$work/leaderboards"
    bench leaderboard submit "$work/runs/classquery-folder" --leaderboards "$board" --plugin "$folder"
    ssh-keygen -q -t ed25519 -N "" -C ci@example -f "$work/ci_key"
    printf 'ci@example namespaces="multilabel-bench" %s\n' "$(cut -d' ' -f1,2 "$work/ci_key.pub")" > "$board/allowed_signers"
    local stored
    stored=$(ls "$board"/submissions/*/*/*.json | grep -v verified | head -n 1)
    mv "$folder" "$work/moved-package"  # reproduce must import the bundle's copy, not this folder
    bench leaderboard reproduce "$stored" --leaderboards "$board" --data-root "$work/data/manifest.csv" \
        --sign "$work/ci_key" --quiet
    mv "$work/moved-package" "$folder"
    bench leaderboard build --leaderboards "$board"
    grep -h "classquery-adamw" "$board"/tables/*.md | grep -q "verified"
    echo "classquery package: submitted, reproduced from its bundle, signed and shown verified with its recipe"
}

package_example
