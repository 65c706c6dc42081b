"""A fusion's members: stored submissions whose stored scores, fused again, give its scores.

A fused run names each member by run id and by the sha256 of its ``scores.npz``; each must
be a stored submission of the same data, protocol and deviations. Fusing the members'
stored scores (aligned to the fusion's image order, in the recorded member order, with the
recorded fusion component and version) must give the fusion's scores bit for bit: then the
fusion is exactly what its members imply, and it is verified when they are.
"""

from __future__ import annotations

import numpy as np

from harness.errors import UserError
from harness.leaderboard.bundle import Bundle
from harness.leaderboard.checks import Where
from harness.leaderboard.packed_scores import read_packed
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


def check_fused(record: RunRecord, scores: np.ndarray, ids: np.ndarray, members: list[Bundle], component,
                where: Where) -> None:
    """The members agree with the fusion, and fusing their stored scores gives its scores."""
    for match in members:
        theirs = match.record
        for name, mine, other in (("dataset.fingerprint", record.dataset.fingerprint, theirs.dataset.fingerprint),
                                  ("protocol.hash", record.protocol.hash, theirs.protocol.hash),
                                  ("protocol.deviations", record.protocol.deviations, theirs.protocol.deviations)):
            if mine != other:
                raise UserError(f"{where.result}: {name} is {mine!r}, but member {match.id} has {other!r}")
    if component.spec.version != record.fusion.version:
        raise UserError(f"{where.result}: fusion.version is {record.fusion.version!r}, but fusion {record.fusion.name!r} "
                        f"here is version {component.spec.version!r}; install the version the fusion used")
    aligned = []
    for match in members:
        member_scores, _, member_ids = read_packed(match.scores_path)
        position = {image_id: i for i, image_id in enumerate(member_ids.tolist())}
        if set(position) != set(ids.tolist()):
            raise UserError(f"{where.scores}: its image ids are not those of member {match.id}")
        aligned.append(member_scores[[position[i] for i in ids.tolist()]])
    fused = np.asarray(component.call("fuse", component.spec.fuse, aligned)).astype(np.float32)
    if fused.shape != scores.shape or not np.array_equal(fused, scores):
        raise UserError(f"{where.scores}: scores are not fusion {record.fusion.name!r} of the stored members' scores; "
                        "fuse the submitted member runs again with `bench fuse`")
