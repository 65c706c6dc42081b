"""A fusion's members: stored submissions whose stored scores, fused again, give its scores.

A fused run names each member by run id and by the sha256 of its ``scores.npz``; each must
be a different stored *trained* submission of the same data, protocol and deviations (a
fusion of fusions is refused: a fusion row is described by the trained runs it fuses, so
fuse those directly). What the fused record says of its members (``members[*]``: kind,
model, augmentation, size, seed) and what it copied from them (``model``, ``size``,
``augmentation`` and the other facts ``bench fuse`` keeps when every member agrees, the
dataset and protocol blocks) must be what the stored members hold. Fusing the members'
stored scores (aligned to the fusion's image order by ``align_by_id``, in the recorded member order, with the
recorded fusion component and version) must give the fusion's scores bit for bit: then the
fusion is exactly what its members imply, and it is verified when they are.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from harness.alignment import Scored, align_by_id
from harness.errors import UserError
from harness.fusion import SHARED_FIELDS
from harness.leaderboard.bundle import Bundle
from harness.leaderboard.checks import Where
from harness.results import RunRecord


def find_members(record: RunRecord, stored: list[Bundle], where: Where) -> list[Bundle]:
    """The stored submission of every member, in the record's order."""
    members = []
    for index, member in enumerate(record.members):
        match = next((b for b in stored if b.submitted_scores_sha256 == member.scores_sha256
                      and b.record.run_id == member.run_id), None)
        if match is None:
            raise UserError(f"{where.result}: members[{index}] (run {member.run_id!r}, scores sha256 "
                            f"{member.scores_sha256[:12]}…) is not a stored submission; submit every member run first")
        members.append(match)
    return members


def _first_difference(mine: Any, theirs: Any) -> str | None:
    """The first field of two records of one dataclass that differs, or None."""
    return next((f.name for f in dataclasses.fields(mine) if getattr(mine, f.name) != getattr(theirs, f.name)), None)


def check_members(record: RunRecord, members: list[Bundle], where: Where) -> None:
    """Each member a different stored trained submission of the fusion's data and protocol,
    described in ``members[*]`` as it is stored, and the fused record's copied facts theirs."""
    for index, match in enumerate(members):
        if match.record.kind != "train":
            raise UserError(f"{where.result}: members[{index}] is the fusion submission {match.id}; a leaderboard fusion "
                            "fuses trained runs: fuse the trained runs behind it directly with `bench fuse`")
        first = [m.id for m in members].index(match.id)
        if first != index:
            raise UserError(f"{where.result}: members[{index}] is members[{first}] again (submission {match.id}); each "
                            "member of a fusion is a different run")
    for index, (member, match) in enumerate(zip(record.members, members)):
        theirs = match.record
        stored = {"run_id": theirs.run_id, "kind": theirs.kind, "model": theirs.model.name,
                  "augmentation": theirs.augmentation.name, "size": theirs.size, "seed": theirs.seed,
                  "scores_sha256": match.submitted_scores_sha256}
        for name, value in stored.items():
            if getattr(member, name) != value:
                raise UserError(f"{where.result}: members[{index}].{name} is {getattr(member, name)!r}, but member "
                                f"submission {match.id} has {value!r}")
        for name, mine, other in (("dataset.fingerprint", record.dataset.fingerprint, theirs.dataset.fingerprint),
                                  ("protocol.hash", record.protocol.hash, theirs.protocol.hash),
                                  ("protocol.deviations", record.protocol.deviations, theirs.protocol.deviations)):
            if mine != other:
                raise UserError(f"{where.result}: {name} is {mine!r}, but member {match.id} has {other!r}")
    reference = members[0]
    for block in ("dataset", "protocol"):
        differs = _first_difference(getattr(record, block), getattr(reference.record, block))
        if differs:
            raise UserError(f"{where.result}: {block}.{differs} is {getattr(getattr(record, block), differs)!r}, but "
                            f"member {reference.id}, whose {block} a fusion records, has "
                            f"{getattr(getattr(reference.record, block), differs)!r}")
    for name in SHARED_FIELDS:
        values = [getattr(m.record, name) for m in members]
        agree = all(v == values[0] for v in values)
        mine, shared = getattr(record, name), values[0] if agree else None
        if mine == shared:
            continue
        if dataclasses.is_dataclass(mine) and type(mine) is type(shared):
            part = _first_difference(mine, shared)
            name, mine, shared = f"{name}.{part}", getattr(mine, part), getattr(shared, part)
        theirs = f"share {shared!r}" if agree else "differ in it"
        raise UserError(f"{where.result}: {name} is {mine!r}, but its members {theirs}; a fused record holds what "
                        "every member shares, else null")


def check_fused(record: RunRecord, scores: np.ndarray, ids: np.ndarray, members: list[Bundle], component,
                where: Where) -> None:
    """Fusing the members' stored scores with the recorded fusion gives the fusion's scores."""
    if component.spec.version != record.fusion.version:
        raise UserError(f"{where.result}: fusion.version is {record.fusion.version!r}, but fusion {record.fusion.name!r} "
                        f"here is version {component.spec.version!r}; install the version the fusion used")
    scored = [Scored(where.scores, ids, scores)]
    for match in members:
        member_scores, _, member_ids = match.scores()
        scored.append(Scored(str(match.scores_path), member_ids, member_scores))
    aligned = align_by_id(scored, "fuse the submitted member runs again with `bench fuse`")[1:]
    fused = np.asarray(component.call("fuse", component.spec.fuse, aligned)).astype(np.float32)
    if fused.shape != scores.shape or not np.array_equal(fused, scores):
        raise UserError(f"{where.scores}: scores are not fusion {record.fusion.name!r} of the stored members' scores; "
                        "fuse the submitted member runs again with `bench fuse`")
