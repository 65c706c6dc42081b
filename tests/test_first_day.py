"""The README's "First day" commands, read from the README and run as written against tiny
VOC archives served on 127.0.0.1, with the network otherwise unreachable."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner
from servers import Files, serving
from test_data_fetch import official, tiny_voc_archives

from harness.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def first_day_commands() -> list[list[str]]:
    """The ``bench`` lines of the README's "First day" section, as argument lists."""
    section = re.search(r"^## First day.*?```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.M | re.S)
    return [shlex.split(line)[1:] for line in section.group(1).splitlines() if line.startswith("bench ")]


def test_the_section_holds_the_whole_path():
    assert [args[:2] for args in first_day_commands()] == [
        ["weights", "fetch"], ["data", "where"], ["data", "fetch"], ["weights", "check"], ["data", "verify"],
        ["run", "--dataset"]]


@pytest.mark.slow
def test_the_first_day_commands_run_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # a closed port: no request leaves this machine
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    _, archives = tiny_voc_archives(tmp_path)
    official("voc2007", archives, monkeypatch)
    files = Files()
    files.content.update({f"/{name}": data for name, data in archives.items()})
    data_root = tmp_path / "data"
    outputs = {}
    with serving(files) as base:
        monkeypatch.setenv("BENCH_DATA_MIRROR", base)
        for args in first_day_commands():
            args = [arg.replace("~/data", str(data_root)) for arg in args]
            if args[0] == "run":
                args += ["--epochs", "1", "--size", "64", "--device", "cpu", "--quiet", "--out", str(tmp_path / "runs")]
            if args[:2] == ["weights", "check"]:
                torch.manual_seed(0)
                stand_in = tmp_path / "torch" / "hub" / "checkpoints" / "resnet101-63fe2227.pth"
                torch.save(torchvision.models.resnet101().state_dict(), stand_in)
            outputs[" ".join(args[:2])] = CliRunner().invoke(main, args)
    fetch = outputs["weights fetch"]
    assert fetch.exit_code == 1
    assert "https://download.pytorch.org/models/resnet101-63fe2227.pth: download failed" in fetch.output
    assert outputs["data where"].exit_code == 0 and outputs["data fetch"].exit_code == 0
    assert outputs["weights check"].exit_code == 1 and "differs" in outputs["weights check"].output
    verify = outputs["data verify"]
    assert verify.exit_code == 1 and "20 images listed; the official split has 5,011" in verify.output
    run = outputs["run --dataset"]
    assert run.exit_code == 0, run.output
    record = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    assert record["dataset"]["name"] == "voc2007" and 0 < record["metrics"]["map"] <= 1
    assert record["protocol"]["deviations"]["init"] == {"protocol": "imagenet", "used": "file"}
