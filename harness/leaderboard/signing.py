"""Signed verifications: only a maintainer's key makes a leaderboard row ``verified``.

Every hash a verification carries can be computed from the bundle itself, so a verification
file alone proves nothing: anyone could write one by hand. ``bench leaderboard reproduce
--sign KEY`` therefore signs it with an SSH key the way git signs commits
(``ssh-keygen -Y sign -n multilabel-bench``), and ``build`` accepts it only when
``ssh-keygen -Y verify`` finds a good signature by a key listed in
``leaderboards/allowed_signers`` (the format of git's ``gpg.ssh.allowedSignersFile``: one
``principal key-type base64-key`` line per maintainer).

The signed message is the canonical JSON (sorted keys, no whitespace) of the whole
verification without its ``signature``: the submission id and the sha256 of the bundle's
content, its result and its scores, the outcome, and what machine found it. Editing any of
them, or moving the signature to another submission, breaks the signature.

ssh-keygen runs with an argument list (never a shell); the key and the signers file are
passed as absolute paths, so no name can read as an option.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import BadInput, UserError
from harness.naming import canonical_json
from harness.leaderboard.bundle import Bundle, Verification, read_verification

NAMESPACE = "multilabel-bench"
ALLOWED_SIGNERS = "allowed_signers"
SIGNATURE = "signature"
MAX_SIGNERS_BYTES = 10**6
_TIMEOUT_S = 60


def allowed_signers(root: Path) -> Path:
    """The maintainers' public keys of the leaderboards folder ``root``."""
    return Path(root).resolve() / ALLOWED_SIGNERS


def signed_message(verification: dict[str, Any]) -> bytes:
    """What a signature covers: the verification's canonical JSON without its signature."""
    return canonical_json({k: v for k, v in verification.items() if k != SIGNATURE}).encode("utf-8")


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise UserError("ssh-keygen is not installed; install OpenSSH (8.2 or later) to sign and check verifications")
    return found


def _run(arguments: list[str], message: bytes) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([_ssh_keygen(), *arguments], input=message, capture_output=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"ssh-keygen {arguments[0]} {arguments[1]} took over {_TIMEOUT_S} s; a key with a passphrase "
                        "needs a terminal or ssh-agent") from None


def _last_line(output: bytes) -> str:
    lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def sign(message: bytes, key: Path) -> str:
    """The armored SSH signature of ``message`` by private key file ``key`` (or, for a public
    key file, by its private half held in ssh-agent)."""
    key = Path(key).expanduser().resolve()
    if not key.is_file():
        raise UserError(f"--sign {key}: no such key file; give an SSH private key (ssh-keygen -t ed25519)")
    done = _run(["-Y", "sign", "-f", str(key), "-n", NAMESPACE], message)
    if done.returncode != 0 or b"BEGIN SSH SIGNATURE" not in done.stdout:
        raise UserError(f"--sign {key}: ssh-keygen could not sign with it ({_last_line(done.stderr)}); give an SSH "
                        "private key file, readable by you only")
    return done.stdout.decode("ascii")


def _signers_file(allowed: Path) -> Path:
    """``allowed`` when it is a regular file of bounded size (it is read by ssh-keygen)."""
    try:
        status = os.lstat(allowed)
    except FileNotFoundError:
        raise UserError(f"{allowed}: no such file; it lists the maintainers' public keys that sign verifications "
                        "(leaderboards/README.md says how to add one)") from None
    if not os.path.isfile(allowed) or os.path.islink(allowed) or status.st_size > MAX_SIGNERS_BYTES:
        raise BadInput(f"{allowed}: not a regular file of at most {MAX_SIGNERS_BYTES} bytes; restore it from version "
                       "control")
    return allowed


def signer(message: bytes, signature: str, allowed: Path, where: str) -> str:
    """The principal of ``allowed`` whose key made ``signature`` over ``message`` in this
    namespace; anything else is one ``BadInput`` line naming ``where``."""
    allowed = _signers_file(Path(allowed))
    advice = "delete it; only `bench leaderboard reproduce --sign KEY` with a key in allowed_signers writes one"
    if not isinstance(signature, str) or not signature.startswith("-----BEGIN SSH SIGNATURE-----"):
        raise BadInput(f"{where}: not signed; a verification counts only with a maintainer's signature: {advice}")
    with tempfile.TemporaryDirectory(prefix="bench-signature-") as scratch:
        signature_file = Path(scratch) / "verification.sig"
        signature_file.write_text(signature, encoding="ascii", errors="replace")
        found = _run(["-Y", "find-principals", "-s", str(signature_file), "-f", str(allowed)], b"")
        principals = [p for p in found.stdout.decode("utf-8", "replace").splitlines() if p.strip()]
        if found.returncode != 0 or not principals:
            raise BadInput(f"{where}: its signature is not by a key listed in {allowed}; {advice}")
        for principal in principals:
            checked = _run(["-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE,
                            "-s", str(signature_file)], message)
            if checked.returncode == 0:
                return principal
    raise BadInput(f"{where}: its signature by {principals[0]} does not match its content (edited after it was "
                   f"signed, or signed for another purpose); {advice}")


def check_signed(verification: dict[str, Any], allowed: Path, where: str) -> str:
    """The principal that signed the verification ``verification`` (its JSON object)."""
    return signer(signed_message(verification), verification.get(SIGNATURE), allowed, where)


def sign_verification(verification: dict[str, Any], key: Path, allowed: Path, where: str) -> dict[str, Any]:
    """``verification`` with its ``signature`` by ``key``, checked against ``allowed`` before it
    is returned, so that no verification build would refuse is ever written."""
    unsigned = {k: v for k, v in verification.items() if k != SIGNATURE}
    signed = {**unsigned, SIGNATURE: sign(signed_message(unsigned), key)}
    check_key_listed(key, allowed, signed[SIGNATURE], signed_message(unsigned), where)
    return signed


def check_key_listed(key: Path, allowed: Path, signature: str | None = None, message: bytes | None = None,
                     where: str | None = None) -> str:
    """The principal ``key`` signs as in ``allowed``; refused in one line naming the key when it
    is listed there under none (checked before a long run, with a probe message)."""
    if signature is None:
        message = b"multilabel-bench key probe"
        signature = sign(message, key)
    try:
        return signer(message, signature, allowed, where or f"--sign {key}")
    except BadInput:
        raise UserError(f"--sign {Path(key).expanduser().resolve()}: its public key is not listed in {allowed}; add "
                        "it there (leaderboards/README.md says how) or sign with a listed key") from None


def read_signed(bundle: Bundle) -> Verification | None:
    """The verification stored beside stored bundle ``bundle`` (``read_verification``), which
    must carry a good signature by a key in the ``allowed_signers`` of its leaderboards folder
    (``<root>/submissions/<dataset>/<protocol>/<bundle>``); None when there is none."""
    verification = read_verification(bundle)
    if verification is not None:
        data = dataclasses.asdict(verification)
        signer(signed_message(data), data[SIGNATURE], allowed_signers(bundle.path.parents[3]),
               str(bundle.verification_path))
    return verification
