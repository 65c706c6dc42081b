"""Notebook use: short ``repr`` and escaped ``_repr_html_`` of RunRecord and Comparison; ``run()``
shows its progress when nobody configured logging, and nothing of its own once someone did."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import TINY_PLUGIN
from runs import make_run

from harness import compare, run
from harness.progress import log, logging_configured
from harness.results import RunRecord


def test_a_record_shows_as_one_line_and_a_small_escaped_table(tmp_path):
    folder = make_run(tmp_path, model="resnet101", aug="mixup", size=448, deviations={"epochs": {"protocol": 40, "used": 3}})
    record = RunRecord.read(folder)
    percent = f"{100 * record.metrics['map']:.1f}"
    assert repr(record) == (f"RunRecord(toy-resnet101-mixup-448-wang2019-seed0: mAP {percent}, resnet101 mixup 448px "
                            f"seed 0, toy, protocol wang2019 (deviations: epochs=3), {folder})")
    page = record._repr_html_()
    assert "<td>toy-resnet101-mixup-448-wang2019-seed0</td>" in page.replace(" style='text-align:left'", "")
    assert "<th>mAP</th>" in page and f"<td>{percent}</td>" in page and "epochs=3" in page
    record.dataset.name = "<img src=x onerror=alert(1)>"  # files come from anyone
    assert "<img" not in record._repr_html_() and "&lt;img src=x" in record._repr_html_()


def test_a_comparison_shows_the_difference_its_interval_and_what_differs(tmp_path):
    a = make_run(tmp_path, size=448, score_seed=1)
    b = make_run(tmp_path, size=512, score_seed=2)
    comparison = compare(a, b, n_bootstrap=50)
    paired = comparison.paired
    low, high = paired["map_diff_interval"]
    verdict = "excludes 0" if (low > 0 or high < 0) else "includes 0"
    assert repr(comparison) == (
        f"Comparison({b} − {a}: mAP {100 * paired['map_diff']:+.2f} points [{100 * low:+.2f}, {100 * high:+.2f}], "
        f"the 95% interval {verdict}; differs in: size)")
    page = comparison._repr_html_()
    assert "differs: size" in page and "448 → 512" in page
    assert f"{100 * paired['map_a']:.1f}, {100 * paired['map_b']:.1f}" in page
    largest = comparison.largest_changes[0]
    assert f"AP {largest['name']}" in page and f"({100 * largest['diff']:+.2f})" in page


@pytest.mark.slow
def test_run_shows_progress_where_logging_is_not_configured(tiny_root, tmp_path, monkeypatch, capsys, request):
    # as in a fresh notebook kernel (a CLI test in this process may have configured the harness's logger)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(log, "handlers", [])
    monkeypatch.setattr(log, "propagate", True)
    level = log.level
    log.setLevel(logging.NOTSET)
    request.addfinalizer(lambda: log.setLevel(level))
    assert not logging_configured()
    record = run(dataset="tiny", data_root=str(tiny_root), model="tiny-cnn", size=32, epochs=2, device="cpu",
                 out=str(tmp_path), plugins=(TINY_PLUGIN,))
    shown = capsys.readouterr().err
    assert "epoch 1/2  loss " in shown and "epoch 2/2  loss " in shown
    assert "batch/s]" in shown or "s/batch]" in shown  # tqdm's bar over the epoch's batches
    assert "scoring test images" in shown
    assert not logging_configured() and log.propagate  # left as it was found

    logging.getLogger().addHandler(logging.NullHandler())  # someone configured logging: the API adds nothing
    again = run(dataset="tiny", data_root=str(tiny_root), model="tiny-cnn", size=32, epochs=2, device="cpu",
                out=str(tmp_path), plugins=(TINY_PLUGIN,), run_id="again")
    assert capsys.readouterr().err == ""
    assert np.array_equal(again.metrics["per_class_ap"], record.metrics["per_class_ap"])
