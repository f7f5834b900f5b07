"""Per-rank process metrics: the rank's whole process tree (DataLoader workers, compile workers), summed.

One :class:`ProcTrees` serves an agent's sampler (agent/system/sampler.py). Each tick it maps parents to
children once for the whole machine (one read of ``/proc/PID/stat`` per process, psutil elsewhere) and
walks each rank's tree from its pid; then reads every process of the trees through psutil:

* ``proc.cpu_percent``: CPU time (user + system) the tree used since the last sample, in % of one core.
  Measured from ``cpu_times`` deltas between samples (psutil's blocking ``interval`` never runs on the
  agent's loop): a process already known counts its delta, one started since the last sample all of its
  time, a process that exited between two samples is not seen (its last interval is lost). The first
  sample of a rank has no baseline, hence no ``proc.cpu_percent``.
* ``proc.rss_bytes``, ``proc.uss_bytes`` (USS reads ``/proc/PID/smaps_rollup``: sampled every
  ``uss_every``-th tick, absent in between), ``proc.threads``, ``proc.open_files`` (file descriptors),
  ``proc.read_bytes``/``proc.write_bytes`` (cumulative I/O counters of the tree's live processes, where
  the agent may read them), ``proc.children`` (processes in the tree besides the rank's own).

A process that vanishes mid-sample is skipped; a rank whose own process is gone gets no row. Nothing
here raises for a process: psutil's errors and OSError are caught where each process is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

_PROC = os.path.isdir("/proc") and os.path.isfile("/proc/self/stat")
_ERRORS = (psutil.Error, OSError, ValueError)


def children_map() -> dict[int, list[int]]:
    """Parent pid → child pids of every process on the machine, read once per tick."""
    out: dict[int, list[int]] = {}
    if _PROC:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                ppid = int(stat[stat.rindex(b")") + 2 :].split(None, 2)[1])  # after "pid (comm) ": state, ppid
            except (OSError, ValueError, IndexError):
                continue  # gone since listdir, or unreadable
            out.setdefault(ppid, []).append(int(name))
        return out
    for p in psutil.process_iter(["ppid"]):
        ppid = p.info.get("ppid")
        if ppid is not None:
            out.setdefault(ppid, []).append(p.pid)
    return out


def tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    """``pid`` and its descendants (breadth first; a cycle from pid reuse is cut)."""
    out, seen, i = [pid], {pid}, 0
    while i < len(out):
        for c in kids.get(out[i], ()):
            if c not in seen:
                seen.add(c)
                out.append(c)
        i += 1
    return out


class ProcTrees:
    """Samples process trees; remembers each process's CPU time for the next sample's delta."""

    def __init__(self, uss_every: int = 1):
        if uss_every < 1:
            raise ValueError(f"uss_every must be >= 1 (1: every sample), got {uss_every!r}")
        self.uss_every = uss_every
        self._procs: dict[int, psutil.Process] = {}  # psutil keeps each one's create time: pid reuse is seen
        self._cpu: dict[int, float] = {}  # pid -> cpu seconds at its last sample
        self._last: dict[int, float] = {}  # rank pid -> time of its last sample
        self.trees: dict[int, list[int]] = {}  # rank pid -> the pids of its tree at the last sample
        self.ticks = 0
        self.skipped = 0  # processes that vanished (or refused) mid-sample

    def __repr__(self) -> str:
        return f"<ProcTrees ranks={len(self._last)} procs={len(self._procs)} ticks={self.ticks} skipped={self.skipped}>"

    def _process(self, pid: int) -> psutil.Process | None:
        p = self._procs.get(pid)
        if p is not None and p.is_running():  # same pid, same create time
            return p
        try:
            p = self._procs[pid] = psutil.Process(pid)
        except _ERRORS:
            self._procs.pop(pid, None)
            return None
        self._cpu.pop(pid, None)  # a new process behind this pid: no baseline
        return p

    def sample(self, pids: Iterable[int], t: float, wall: float) -> dict[int, dict[str, float]]:
        """Rank pid → its tree's metrics at monotonic time ``t`` (CPU deltas) and wall time ``wall`` (epoch
        seconds: what process create times are compared with)."""
        self.ticks += 1
        with_uss = (self.ticks - 1) % self.uss_every == 0
        kids = children_map()
        out: dict[int, dict[str, float]] = {}
        seen: set[int] = set()
        for pid in pids:
            row = self._tree(pid, kids, t, wall, with_uss, seen)
            if row is not None:
                out[pid] = row
        for pid in [p for p in self._procs if p not in seen]:  # forget processes no tree holds any more
            self._procs.pop(pid, None)
            self._cpu.pop(pid, None)
        for pid in [p for p in self._last if p not in out]:
            del self._last[pid]
        self.trees = {pid: tr for pid, tr in self.trees.items() if pid in out}
        return out

    def _tree(
        self, pid: int, kids: dict, t: float, wall: float, with_uss: bool, seen: set[int]
    ) -> dict[str, float] | None:
        last = self._last.get(pid)
        cpu = rss = uss = threads = fds = rd = wr = 0.0
        n = 0
        have_io = have_uss = have_fds = False
        root_ok = False
        members = self.trees[pid] = tree(pid, kids)
        for p_id in members:
            p = self._process(p_id)
            if p is None:
                self.skipped += 1
                continue
            try:
                with p.oneshot():
                    ct = p.cpu_times()
                    mem = p.memory_info()
                    nthreads = p.num_threads()
                    created = p.create_time()
            except _ERRORS:
                self.skipped += 1
                continue
            seen.add(p_id)
            root_ok = root_ok or p_id == pid
            n += 1
            used = ct.user + ct.system
            before = self._cpu.get(p_id)
            if before is not None:
                cpu += max(used - before, 0.0)
            elif last is not None and created >= wall - (t - last):
                cpu += used  # started since the last sample: all of its time is in this interval
            self._cpu[p_id] = used
            rss += mem.rss
            threads += nthreads
            fds, have_fds = self._add(p.num_fds, fds, have_fds)
            try:
                io = p.io_counters()
                rd += io.read_bytes
                wr += io.write_bytes
                have_io = True
            except _ERRORS + (AttributeError,):
                pass  # another user's process, or a platform without per-process I/O counters
            if with_uss:
                try:
                    uss += p.memory_full_info().uss
                    have_uss = True
                except _ERRORS + (AttributeError,):
                    pass
        if not root_ok:
            return None
        row = {"proc.rss_bytes": rss, "proc.threads": threads, "proc.children": float(n - 1)}
        if last is not None and t > last:
            row["proc.cpu_percent"] = 100.0 * cpu / (t - last)
        if have_fds:
            row["proc.open_files"] = fds
        if have_io:
            row["proc.read_bytes"], row["proc.write_bytes"] = rd, wr
        if have_uss:
            row["proc.uss_bytes"] = uss
        self._last[pid] = t
        return row

    def _add(self, read, total: float, have: bool) -> tuple[float, bool]:
        try:
            return total + read(), True
        except _ERRORS + (AttributeError,):
            return total, have
