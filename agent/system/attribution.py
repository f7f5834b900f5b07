"""Which GPU a rank uses: NVML's compute processes first, else ``CUDA_VISIBLE_DEVICES`` × ``LOCAL_RANK``.

The rule (docs/system.md):

1. a device one of whose compute processes is in the rank's process tree is the rank's (the lowest
   index when several are: a rank that drives two GPUs gets the first; host rows keep them all);
2. else the rank's ``CUDA_VISIBLE_DEVICES`` (read from its process environment, same user only) as a
   list: entry ``LOCAL_RANK`` of it when the list is longer than the local rank, its only entry when it
   has one (a launcher that binds one GPU per task), an index or a ``GPU-…`` UUID (prefix) naming a device;
3. else, with ``CUDA_VISIBLE_DEVICES`` unset, device ``LOCAL_RANK`` when it exists;
4. else none: the rank's rows have no ``gpu.*`` keys.

A CUDA process appears in NVML's list only once it created its context, so the first samples of a rank
may be attributed by rule 2 or 3 and later ones by rule 1; both name the same device on a sane launch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from agent.system.gpu import Device


class RankGpuView(NamedTuple):
    """What attribution needs of one rank."""

    run_id: int
    pids: frozenset[int]  # the rank's process tree
    local_rank: int
    cuda_visible: str | None  # None: unset (or unreadable)


def _by_env(rank: RankGpuView, devices: Sequence[Device]) -> Device | None:
    by_index = {d.index: d for d in devices}
    if rank.cuda_visible is None:
        return by_index.get(rank.local_rank)
    entries = [e.strip() for e in rank.cuda_visible.split(",") if e.strip()]
    if not entries:
        return None  # CUDA_VISIBLE_DEVICES="": no GPU
    if len(entries) > rank.local_rank >= 0:
        entry = entries[rank.local_rank]
    elif len(entries) == 1:
        entry = entries[0]
    else:
        return None
    if entry.isdigit():
        return by_index.get(int(entry))
    return next(
        (d for d in devices if d.uuid and entry.startswith(("GPU-", "MIG-")) and d.uuid.startswith(entry)), None
    )


def attribute(ranks: Sequence[RankGpuView], devices: Sequence[Device]) -> dict[int, tuple[Device, str]]:
    """run id → (its device, ``"pid"`` or ``"env"``: the rule that named it), for the ranks that have one."""
    out: dict[int, tuple[Device, str]] = {}
    for rank in ranks:
        hit = next((d for d in sorted(devices, key=lambda d: d.index) if d.pids & rank.pids), None)
        if hit is not None:
            out[rank.run_id] = (hit, "pid")
            continue
        hit = _by_env(rank, devices)
        if hit is not None:
            out[rank.run_id] = (hit, "env")
    return out
