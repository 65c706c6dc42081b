"""`bench weights list|check|fetch`, torchvision weights enums and timm's hub weights, against
a server on 127.0.0.1 and caches in a temporary folder (never the user's)."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
import torch
import torchvision
from click.testing import CliRunner
from conftest import TINY_PLUGIN
from servers import Files, serving

from harness import weights
from harness.cli import main
from harness.naming import sha256_of
from harness.results import Pretrained, WeightsFile


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """TORCH_HOME and HF_HOME in a temporary folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


def _weights_bytes(seed: int) -> bytes:
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save({"weight": torch.randn(3, 4)}, buffer)
    return buffer.getvalue()


def _plugin(tmp_path, url: str, name: str):
    """A plugin whose model loads ``name`` published at ``url`` through harness.weights."""
    plugin = tmp_path / "published_plugin.py"
    plugin.write_text(
        "import torch.nn as nn\n"
        "from harness import ModelSpec, hookimpl\n"
        "from harness.weights import load_state_dict\n"
        "def build(num_classes, pretrained):\n"
        "    model = nn.Linear(4, 3)\n"
        "    if pretrained:\n"
        f"        model.weight.data.copy_(load_state_dict({name!r}, url={url!r})['weight'])\n"
        "    return model\n"
        "@hookimpl\n"
        "def register_models(register):\n"
        "    register(ModelSpec(name='published', build=build, head_prefixes=('weight',)))\n")
    return plugin


def test_fetch_downloads_into_torch_hub_checks_the_hash_and_check_then_passes(caches, tmp_path):
    data = _weights_bytes(0)
    name = f"tiny-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    files = Files()
    files.content[f"/models/{name}"] = data
    with serving(files) as base:
        plugin = _plugin(tmp_path, f"{base}/models/{name}", name)
        runner = CliRunner()
        listed = runner.invoke(main, ["weights", "list", "published", "--plugin", str(plugin), "--json"])
        assert listed.exit_code == 0, listed.output
        assert json.loads(listed.output) == [{
            "model": "published", "file": name, "url": f"{base}/models/{name}",
            "sha256": hashlib.sha256(data).hexdigest()[:8] + "…",
            "path": str(caches / "torch" / "hub" / "checkpoints" / name), "present": False}]
        before = runner.invoke(main, ["weights", "check", "published", "--plugin", str(plugin)])
        assert before.exit_code == 1 and "missing" in before.output
        fetched = runner.invoke(main, ["weights", "fetch", "published", "--plugin", str(plugin), "--json"])
        assert fetched.exit_code == 0, fetched.output
        assert json.loads(fetched.stdout)[0]["status"] == "published"
        assert (caches / "torch" / "hub" / "checkpoints" / name).read_bytes() == data
        after = runner.invoke(main, ["weights", "check", "published", "--plugin", str(plugin)])
        assert after.exit_code == 0, after.output
        assert "published" in after.output
    assert [request[:2] for request in files.requests] == [("GET", f"/models/{name}")]


def test_a_corrupted_download_is_refused_and_nothing_is_kept(caches, tmp_path):
    data = _weights_bytes(0)
    name = f"tiny-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    files = Files()
    files.content[f"/{name}"] = _weights_bytes(1)
    with serving(files) as base:
        plugin = _plugin(tmp_path, f"{base}/{name}", name)
        result = CliRunner().invoke(main, ["weights", "fetch", "published", "--plugin", str(plugin)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"published: downloading {base}/{name} into {caches / 'torch' / 'hub' / 'checkpoints'}"
    line = result.stderr.splitlines()[-1]
    assert len(result.stderr.splitlines()) == 2 and "download refused" in line and f"{base}/{name}" in line
    checkpoints = caches / "torch" / "hub" / "checkpoints"
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []


def test_missing_weights_name_the_url_and_the_fetch_command(caches, tiny_root, tmp_path):
    result = CliRunner().invoke(main, [
        "run", "--dataset", "tiny", "--plugin", TINY_PLUGIN, "--data-root", str(tiny_root), "--model", "resnet50",
        "--pretrained", "imagenet", "--size", "32", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path),
        "--quiet"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert len(line.splitlines()) == 1
    assert "`bench weights fetch resnet50` downloads https://download.pytorch.org/models/resnet50-0676ba61.pth" in line


def test_torchvision_weights_enums_resolve_to_torchvisions_file(caches):
    enum = torchvision.models.ResNet101_Weights.IMAGENET1K_V1
    file = weights.torch_file(enum)
    assert file.name == "resnet101-63fe2227.pth" and file.url == enum.url and file.sha256_prefix == "63fe2227"
    checkpoints = caches / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet101-63fe2227.pth").write_bytes(b"x")
    with weights.recording() as record:
        assert weights.resolve(enum) == checkpoints / "resnet101-63fe2227.pth"
    assert record.files[0]["expected_name"] == "resnet101-63fe2227.pth"
    assert record.files[0]["sha256"] == hashlib.sha256(b"x").hexdigest()


def _hub_cache(root, repo_id: str, files: dict[str, bytes]) -> None:
    """The hub client's cache layout: blobs named by their sha256, a snapshot of links, refs/main."""
    folder = root / "hf" / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "c" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "blobs").mkdir()
    (folder / "snapshots" / commit).mkdir(parents=True)
    for filename, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        (folder / "blobs" / digest).write_bytes(data)
        os.symlink(f"../../blobs/{digest}", folder / "snapshots" / commit / filename)


def _safetensors_of(model) -> bytes:
    import safetensors.torch

    return safetensors.torch.save({k: v.contiguous() for k, v in model.state_dict().items()})


def test_timms_published_hub_weights_count_as_the_published_weights(caches):
    import timm

    from plugins.models import build_timm

    torch.manual_seed(3)
    reference = timm.create_model("test_resnet.r160_in1k")
    data = _safetensors_of(reference)
    _hub_cache(caches, "timm/test_resnet.r160_in1k", {"model.safetensors": data})
    with weights.recording() as record:
        model = build_timm(5, True, variant="test_resnet.r160_in1k")
    assert torch.equal(model.conv1[0].weight, reference.conv1[0].weight)
    assert model.get_classifier().out_features == 5
    digest = hashlib.sha256(data).hexdigest()
    assert record.files[0]["expected_name"] == f"hf-hub:timm/test_resnet.r160_in1k/model.safetensors#sha256={digest}"
    assert record.files[0]["matches_published"] is True
    files = [WeightsFile(**f) for f in record.files]
    assert weights.init_used(Pretrained(mode="imagenet", files=files)) == "imagenet"
    forged = [WeightsFile(**{**record.files[0], "sha256": "0" * 64})]
    assert weights.init_used(Pretrained(mode="imagenet", files=forged)) == "file"


def test_timm_hf_hub_names_build_from_the_cached_config_and_weights(caches):
    import timm

    from plugins.models import build_timm

    torch.manual_seed(4)
    reference = timm.create_model("test_efficientnet.r160_in1k")
    config = {"architecture": "test_efficientnet", "num_classes": 1000,
              "pretrained_cfg": {"tag": "r160_in1k", "classifier": "classifier", "num_classes": 1000}}
    _hub_cache(caches, "someone/tiny-effnet", {"config.json": json.dumps(config).encode(),
                                               "model.safetensors": _safetensors_of(reference)})
    with weights.recording() as record:
        model = build_timm(7, True, variant="hf-hub:someone/tiny-effnet")
    assert torch.equal(model.conv_stem.weight, reference.conv_stem.weight)
    assert model.head_prefixes == ("classifier",) and model.classifier.out_features == 7
    assert [f["expected_name"].split("#")[0] for f in record.files] == ["hf-hub:someone/tiny-effnet/model.safetensors"]
    listed = CliRunner().invoke(main, ["weights", "check", "timm:hf-hub:someone/tiny-effnet", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(row["file"], row["status"]) for row in json.loads(listed.output)] == [
        ("hf-hub:someone/tiny-effnet/config.json", "present"),
        ("hf-hub:someone/tiny-effnet/model.safetensors", "published")]


def test_a_hub_file_that_does_not_hash_to_its_blob_name_is_not_published(caches):
    import timm

    from plugins.models import build_timm

    data = _safetensors_of(timm.create_model("test_resnet.r160_in1k"))
    _hub_cache(caches, "timm/test_resnet.r160_in1k", {"model.safetensors": data})
    blob = next((caches / "hf" / "hub" / "models--timm--test_resnet.r160_in1k" / "blobs").iterdir())
    tampered = _safetensors_of(timm.create_model("test_resnet.r160_in1k"))
    blob.write_bytes(tampered)
    with weights.recording() as record:
        build_timm(5, True, variant="test_resnet.r160_in1k")
    assert record.files[0]["matches_published"] is (tampered == data)
    assert record.files[0]["sha256"] == sha256_of(blob)


def _hub_server(files: Files, repo_id: str, content: dict[str, bytes], etags: dict[str, str] | None = None) -> None:
    """Serve ``content`` as the hub does: resolve URLs with the commit and the file's digest as ETag."""
    for filename, data in content.items():
        path = f"/{repo_id}/resolve/main/{filename}"
        files.content[path] = data
        etag = (etags or {}).get(filename, hashlib.sha256(data).hexdigest())
        files.headers[path] = {"X-Repo-Commit": "a" * 40, "ETag": f'"{etag}"'}


def test_fetch_of_a_hub_model_downloads_config_and_weights_into_the_hub_cache(caches, monkeypatch):
    import timm

    torch.manual_seed(5)
    reference = timm.create_model("test_efficientnet.r160_in1k")
    config = {"architecture": "test_efficientnet", "pretrained_cfg": {"classifier": "classifier"}}
    files = Files()
    _hub_server(files, "someone/tiny-effnet", {"config.json": json.dumps(config).encode(),
                                               "model.safetensors": _safetensors_of(reference)})
    with serving(files) as base:
        monkeypatch.setenv("HF_ENDPOINT", base)
        result = CliRunner().invoke(main, ["weights", "fetch", "timm:hf-hub:someone/tiny-effnet", "--json"])
    assert result.exit_code == 0, result.output
    assert [(row["file"], row["status"]) for row in json.loads(result.stdout)] == [
        ("hf-hub:someone/tiny-effnet/config.json", "present"),
        ("hf-hub:someone/tiny-effnet/model.safetensors", "published")]
    from plugins.models import build_timm

    with weights.recording() as record:
        model = build_timm(3, True, variant="hf-hub:someone/tiny-effnet")
    assert torch.equal(model.conv_stem.weight, reference.conv_stem.weight)
    assert record.files[0]["matches_published"] is True
    assert record.files[0]["file"].startswith(str(caches / "hf" / "hub" / "models--someone--tiny-effnet"))


def test_a_hub_download_that_does_not_hash_to_the_hubs_digest_is_refused(caches, monkeypatch):
    files = Files()
    _hub_server(files, "timm/test_resnet.r160_in1k", {"model.safetensors": b"not the published bytes"},
                etags={"model.safetensors": "0" * 64})
    with serving(files) as base:
        monkeypatch.setenv("HF_ENDPOINT", base)
        result = CliRunner().invoke(main, ["weights", "fetch", "timm:test_resnet"])
    assert result.exit_code == 1
    line = result.stderr.splitlines()[-1]
    assert len(result.stderr.splitlines()) == 2 and "does not hash to the hub's digest" in line and "deleted" in line
    repo = caches / "hf" / "hub" / "models--timm--test_resnet.r160_in1k"
    assert [p for p in repo.rglob("*") if p.is_file() or p.is_symlink()] == [repo / "refs" / "main"]


def test_a_plugin_naming_torchvisions_file_gets_its_url_and_others_are_told_to_state_one(caches):
    assert weights.torch_file("vgg16-397923af.pth").url == torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    with pytest.raises(weights.MissingWeights) as missing:
        with weights.recording(model="mine"):
            weights.resolve("my-backbone-0123abcd.pth")
    assert "`bench weights fetch mine` needs a URL from the model's plugin" in str(missing.value)
    assert missing.value.file.url is None and missing.value.file.sha256_prefix == "0123abcd"


@pytest.mark.slow
def test_a_run_from_timms_hub_weights_records_no_init_deviation(caches, tiny_root, tmp_path):
    import timm

    _hub_cache(caches, "timm/test_resnet.r160_in1k", {"model.safetensors": _safetensors_of(
        timm.create_model("test_resnet.r160_in1k"))})
    result = CliRunner().invoke(main, [
        "run", "--dataset", "tiny", "--plugin", TINY_PLUGIN, "--data-root", str(tiny_root), "--model",
        "timm:test_resnet", "--pretrained", "imagenet", "--protocol", "wang2019", "--size", "64", "--epochs", "1",
        "--device", "cpu", "--out", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    assert record["model"]["pretrained"]["files"][0]["matches_published"] is True
    assert "init" not in record["protocol"]["deviations"]
    assert set(record["protocol"]["deviations"]) == {"epochs", "sizes"}
