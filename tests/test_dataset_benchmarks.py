"""The dataset benchmarks run end to end on tiny settings and write the JSON they promise (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(BENCHMARKS / name), *arguments], capture_output=True, text=True,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_verify_speed_compares_the_paths_and_the_reports(tmp_path):
    output = tmp_path / "verify.json"
    result = run_script("verify_speed.py", "--images", "40", "--rounds", "1", "--workers", "2", "--json", str(output))
    record = json.loads(output.read_text())
    assert record["benchmark"] == "verify_speed" and record["settings"]["images"] == 40
    assert set(record["images_per_s"]) == {"old", "one core", "new", "processes"}
    assert all(len(r["rounds"]) == 1 and r["median"] > 0 for r in record["images_per_s"].values())
    assert record["ratio_to_old"]["old"] == 1 and record["reports_identical"] is True
    assert "same report with 1 thread and 2: yes" in result.stdout


def test_annotation_load_measures_first_and_second_loads(tmp_path):
    output = tmp_path / "annotations.json"
    run_script("annotation_load.py", "--scale", "0.001", "--workdir", str(tmp_path / "work"), "--json", str(output))
    record = json.loads(output.read_text())
    coco, nus = record["datasets"]["coco2014"], record["datasets"]["nuswide"]
    assert coco["layout"]["train2014"] == {"images": 83, "without_instances": 1, "instances": 605,
                                           "megabytes": coco["layout"]["train2014"]["megabytes"]}
    assert coco["first"]["listed"] == {"train": 82, "test": 40} == coco["second"]["listed"]
    assert nus["first"]["listed"] == {"train": 162, "test": 108} == nus["second"]["listed"]
    for measured in (coco, nus):
        assert measured["first"]["load_s"] > 0 and measured["second"]["max_rss_mb"] > 0
        assert measured["verify_command_s"]["first"] > 0
    assert list((tmp_path / "work" / "coco2014-x0.001" / "annotations").iterdir())
