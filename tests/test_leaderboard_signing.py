"""Signed verifications: a hand-written, unlisted, edited, moved or otherwise-namespaced
verification is one line naming it, and ``build --check`` fails on it; keys are throwaway
ed25519 keys made by the real ssh-keygen in tmp folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import UserError, cut
from harness.leaderboard import submit
from harness.leaderboard.signing import NAMESPACE, check_key_listed, check_signed, signed_message
from harness.registry import Registry
from runs import make_run
from test_leaderboard_tables import maintainer_key, table, verify_by_hand

ADVICE = "delete it; only `bench leaderboard reproduce --sign KEY` with a key in allowed_signers writes one"


def bench(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def refused(root: Path, message: str) -> None:
    """Both ``build`` and ``build --check`` exit non-zero with exactly ``message`` as their one line."""
    for extra in ((), ("--check",)):
        result = bench("leaderboard", "build", "--leaderboards", root, *extra)
        assert result.exit_code != 0 and result.output == f"Error: {cut(message)}\n", result.output


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "other", "-f", str(path)], check=True)
    return path


def ssh_sign(message: bytes, key: Path, namespace: str = NAMESPACE) -> str:
    done = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", namespace], input=message,
                          capture_output=True, check=True)
    return done.stdout.decode()


@pytest.fixture
def lb(tmp_path):
    """A leaderboards folder with one stored submission (two seeds, so that one can lend its
    verification to the other) and a built table."""
    root = tmp_path / "lb"
    bundles = [submit(make_run(tmp_path / f"r{seed}", seed=seed, score_seed=seed, dataset="coco2014", run_files=True),
                      root, Registry()) for seed in (0, 1)]
    maintainer_key(root)
    return root, bundles


def test_only_a_signature_by_a_listed_key_over_the_current_hashes_verifies(lb, tmp_path):
    root, (bundle, other) = lb
    path = verify_by_hand(bundle)
    assert bench("leaderboard", "build", "--leaderboards", root).exit_code == 0
    assert "| 1 of 2 verified " in table(root, "coco2014-wang2019")  # one row for both seeds, one signed
    assert bench("leaderboard", "build", "--leaderboards", root, "--check").exit_code == 0
    signed = json.loads(path.read_text())

    hand_written = {k: v for k, v in signed.items() if k != "signature"}  # every hash right, as anyone can compute
    path.write_text(json.dumps(hand_written))
    refused(root, f"{path}: not signed; a verification counts only with a maintainer's signature: {ADVICE}")

    stranger = keygen(tmp_path / "stranger")
    path.write_text(json.dumps({**hand_written, "signature": ssh_sign(signed_message(hand_written), stranger)}))
    refused(root, f"{path}: its signature is not by a key listed in {root.resolve() / 'allowed_signers'}; {ADVICE}")

    maintainer = maintainer_key(root)
    for forged in ({**signed, "seconds": 0.5},  # edited after signing
                   {**hand_written, "signature": ssh_sign(signed_message(hand_written), maintainer, "git")},
                   {**hand_written, "signature": json.loads(verify_by_hand(other).read_text())["signature"]}):
        path.write_text(json.dumps(forged))
        refused(root, f"{path}: its signature by maintainer@test does not match its content (edited after it was "
                      f"signed, or signed for another purpose); {ADVICE}")

    path.write_text(json.dumps(signed))
    (root / "allowed_signers").write_text("")  # the key was removed from the maintainers
    refused(root, f"{path}: its signature is not by a key listed in {root.resolve() / 'allowed_signers'}; {ADVICE}")
    (root / "allowed_signers").unlink()
    result = bench("leaderboard", "build", "--leaderboards", root)
    assert result.exit_code == 1 and result.output.startswith(f"Error: {root.resolve() / 'allowed_signers'}: no such file")


def test_a_key_not_listed_is_refused_before_anything_is_trained(lb, tmp_path):
    root, (bundle, _) = lb
    stranger = keygen(tmp_path / "stranger")
    with pytest.raises(UserError, match=f"--sign {stranger}: its public key is not listed in"):
        check_key_listed(stranger, root / "allowed_signers")
    result = bench("leaderboard", "reproduce", bundle.id, "--leaderboards", root, "--sign", stranger)
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"Error: --sign {stranger}: its public key is not listed in")
    result = bench("leaderboard", "reproduce", bundle.id, "--leaderboards", root, "--sign", tmp_path / "nokey")
    assert result.output == f"Error: --sign {tmp_path / 'nokey'}: no such key file; give an SSH private key " \
                            "(ssh-keygen -t ed25519)\n"
    assert check_key_listed(maintainer_key(root), root / "allowed_signers") == "maintainer@test"
    assert not bundle.verification_path.exists()


def test_the_committed_verifications_are_signed_by_a_committed_key():
    root = Path(__file__).resolve().parents[1] / "leaderboards"
    paths = sorted(root.glob("submissions/*/*/*.verified.json"))
    assert paths
    for path in paths:
        assert check_signed(json.loads(path.read_text()), root / "allowed_signers", str(path)) == \
            "maintainer@multilabel-bench"


def test_the_signing_benchmark_times_signing_and_checking():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "verification_signing.py"
    done = subprocess.run([sys.executable, str(script), "--rounds", "1"], capture_output=True, text=True, check=True)
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines()[2:]]
    assert rows == ["sign", "sign and check the key is listed", "check"], done.stdout
