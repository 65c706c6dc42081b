"""The paper's Tables 2 and 3 as data (baselines/wang2019), checked against the paper."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest

from harness.sweep import load_grid

BASELINES = Path(__file__).resolve().parents[1] / "baselines"
COLUMNS = ["dataset", "backbone", "method", "size", "map", "cp_top3", "cr_top3", "cf1_top3",
           "op_top3", "or_top3", "of1_top3", "source", "reference", "note"]
METRICS = COLUMNS[4:11]
DATASETS = ("nuswide", "coco2014", "voc2007")
BACKBONES = ("vgg16", "resnet101")


def load(name: str) -> list[dict]:
    with open(BASELINES / "wang2019" / f"{name}.csv", newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def find(rows, dataset, backbone, method, size=""):
    found = [r for r in rows if (r["dataset"], r["backbone"], r["method"], r["size"]) == (dataset, backbone, method, size)]
    assert len(found) == 1, (dataset, backbone, method, size)
    return found[0]


def test_table2_has_every_cell_exactly_once():
    rows = load("table2")
    assert len(rows) == 54
    keys = [(r["dataset"], r["backbone"], r["method"], r["size"]) for r in rows]
    expected = itertools.product(DATASETS, BACKBONES, ("M1", "M2", "M3"), ("384", "448", "512"))
    assert sorted(keys) == sorted(expected)
    assert all(r["source"] == "wang2019 Table 2" and all(r[m] for m in METRICS) for r in rows)


def test_table3_has_the_ensembles_single_best_and_other_methods():
    rows = load("table3")
    assert len(rows) == 33 and all(r["size"] == "" and r["source"] == "wang2019 Table 3" for r in rows)
    for dataset, backbone in itertools.product(DATASETS, BACKBONES):
        for method in ("ScaleEn", "DistrEn", "Single Best"):
            find(rows, dataset, backbone, method)
    others = [r for r in rows if r["method"] not in ("ScaleEn", "DistrEn", "Single Best")]
    assert len(others) == 15 and all(r["reference"].startswith("[") for r in others)
    assert {r["method"] for r in others} == {
        "CNN-RNN", "RLSD", "WARP", "Ranking", "ResNet-SRN-att", "ResNet-SRN", "AttRegion", "RCP", "WILDCAT"
    }
    assert "WIDECAT" in find(rows, "coco2014", "resnet101", "WILDCAT")["note"]


@pytest.mark.parametrize(
    "table, key, values",
    [
        ("table2", ("nuswide", "vgg16", "M1", "384"), "55.8 37.7 57.3 42.2 54.0 66.5 59.6"),
        ("table2", ("nuswide", "resnet101", "M2", "448"), "60.8 45.8 60.6 49.2 56.2 69.2 62.0"),
        ("table2", ("nuswide", "resnet101", "M3", "512"), "60.1 46.1 59.5 49.0 56.2 69.2 62.0"),
        ("table2", ("coco2014", "vgg16", "M2", "448"), "75.8 63.1 63.3 61.7 65.0 67.1 66.0"),
        ("table2", ("coco2014", "resnet101", "M1", "448"), "79.3 63.0 66.2 64.1 66.9 69.1 68.0"),
        ("table2", ("coco2014", "resnet101", "M2", "512"), "80.9 69.6 66.9 68.4 67.9 70.2 69.0"),
        ("table2", ("voc2007", "vgg16", "M3", "384"), "89.9 41.0 92.9 56.2 44.5 94.2 60.4"),
        ("table2", ("voc2007", "resnet101", "M1", "512"), "94.2 41.4 95.4 56.7 45.5 96.3 61.8"),
        ("table2", ("voc2007", "resnet101", "M2", "384"), "92.4 44.9 94.1 60.1 45.1 95.5 61.2"),
        ("table3", ("nuswide", "vgg16", "DistrEn", ""), "59.3 47.0 55.0 47.0 56.2 69.1 62.0"),
        ("table3", ("nuswide", "vgg16", "CNN-RNN", ""), "- 40.5 30.4 34.7 49.9 61.7 55.2"),
        ("table3", ("nuswide", "resnet101", "ResNet-SRN-att", ""), "61.8 47.4 57.7 47.7 56.2 69.6 62.2"),
        ("table3", ("coco2014", "vgg16", "WARP", ""), "- 55.5 57.4 - 59.6 61.5 60.5"),
        ("table3", ("coco2014", "resnet101", "ScaleEn", ""), "82.2 68.7 68.3 67.3 68.4 70.6 69.5"),
        ("table3", ("coco2014", "resnet101", "WILDCAT", ""), "80.7 - - - - - -"),
        ("table3", ("voc2007", "vgg16", "ScaleEn", ""), "90.5 41.4 93.1 56.6 44.6 94.5 60.6"),
        ("table3", ("voc2007", "vgg16", "RLSD", ""), "87.3 50.5 90.6 64.9 47.5 92.4 62.7"),
        ("table3", ("voc2007", "resnet101", "DistrEn", ""), "94.7 42.0 95.8 57.5 45.6 96.6 62.0"),
    ],
)
def test_values_match_the_paper(table, key, values):
    row = find(load(table), *key)
    assert [row[m] or "-" for m in METRICS] == values.split()


def test_overall_f1_is_the_harmonic_mean_of_overall_precision_and_recall_within_rounding():
    """Printed values are rounded to 0.1, so each may be off by 0.05: a mistyped digit shows."""
    for row in load("table2") + [r for r in load("table3") if r["op_top3"] and r["or_top3"]]:
        p, r, f1 = float(row["op_top3"]), float(row["or_top3"]), float(row["of1_top3"])
        harmonic = 2 * p * r / (p + r)
        slack = 0.05 * (2 * r * r + 2 * p * p) / (p + r) ** 2 + 0.05
        assert abs(harmonic - f1) <= slack + 1e-9, row


def test_single_best_rows_repeat_a_table2_cell():
    table2 = load("table2")
    for row in (r for r in load("table3") if r["method"] == "Single Best"):
        same = [t for t in table2 if (t["dataset"], t["backbone"]) == (row["dataset"], row["backbone"])
                and all(t[m] == row[m] for m in METRICS)]
        assert same, row
        assert f"{same[-1]['method']} {same[-1]['size']}" in row["note"]


def test_grid_files_reproduce_the_tables():
    method = {"flip": "M1", "crop": "M2", "mixup": "M3"}
    table2 = load_grid(BASELINES / "wang2019" / "table2.toml")
    cells = sorted((c.dataset, c.model, method[c.augmentation], str(c.size)) for c in table2.cells)
    assert cells == sorted((r["dataset"], r["backbone"], r["method"], r["size"]) for r in load("table2"))
    assert all(c.protocol == "wang2019" for c in table2.cells)

    table3 = load_grid(BASELINES / "wang2019" / "table3.toml")
    ensembles = {(e.members[0].dataset, e.members[0].model, e.name): e for e in table3.ensembles}
    assert sorted(ensembles) == sorted((r["dataset"], r["backbone"], r["method"]) for r in load("table3")
                                       if r["method"] in ("ScaleEn", "DistrEn"))
    for (dataset, model, name), ensemble in ensembles.items():
        members = sorted((m.augmentation, m.size) for m in ensemble.members)
        if name == "DistrEn":
            assert members == [("crop", 512), ("mixup", 512)]
        else:
            aug = "flip" if (dataset, model) == ("voc2007", "resnet101") else "mixup"
            assert members == [(aug, 384), (aug, 448), (aug, 512)]
    assert set(table3.cells) <= set(table2.cells)
