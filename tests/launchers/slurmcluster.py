"""A one-node SLURM cluster that a test module starts itself: munged, slurmctld and slurmd as child
processes in a temporary directory, with a generated slurm.conf, on loopback and free ports.

Nothing of the machine's own configuration is used (no /etc/slurm, no /etc/munge, no systemd): every
SLURM command gets ``SLURM_CONF`` pointing at the generated file, and munge runs on a private socket
with a fresh key. What makes it run unprivileged-container friendly: ``ProctrackType=proctrack/linuxproc``
and ``TaskPlugin=task/none`` (no cgroups), no accounting, ``SlurmUser``/``SlurmdUser`` the current user.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lchelp import MUNGED, SLURMCTLD, SLURMD, SRUN, require

NODE = "rwnode"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    """The running daemons and the environment that points SLURM's commands at them."""

    root: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __repr__(self) -> str:
        alive = {name: p.poll() is None for name, p in self.procs.items()}
        return f"<SlurmCluster {self.root} {alive}>"

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return dict(base, SLURM_CONF=str(self.conf))

    def cmd(self, *args: str, timeout_s: float = 30) -> str:
        """Run a SLURM client command (sinfo, scontrol, sbatch, ...) against this cluster; its stdout."""
        out = subprocess.run(
            list(args), env=self.env(dict(os.environ)), capture_output=True, text=True, timeout=timeout_s
        )
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {out.returncode}: {out.stderr.strip()}\n{self.logs()}")
        return out.stdout

    def job_field(self, job: str, name: str) -> str:
        """One ``Name=value`` field of ``scontrol show job``, e.g. JobState or Restarts."""
        for token in self.cmd("scontrol", "show", "job", job).split():
            if token.startswith(name + "="):
                return token.split("=", 1)[1]
        raise AssertionError(f"no {name} in scontrol show job {job}")

    def logs(self) -> str:
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / "log" / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(parts)

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _config(root: Path, host: str, user: str, cpus: int) -> str:
    ctld_port, node_port = _free_port(), _free_port()
    return f"""\
ClusterName=rwtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={node_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.sock
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MailProg=/bin/true
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=rw Nodes={NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _wait(cluster: SlurmCluster, condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode} while waiting for {what}\n{cluster.logs()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{cluster.logs()}")
        time.sleep(0.05)


def start_cluster(root: Path) -> SlurmCluster:
    """munged, then slurmctld, then slurmd; returns once the node is idle (ready for jobs)."""
    host = socket.gethostname().split(".")[0]
    user = getpass.getuser()
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o711)  # munged wants its socket's directory searchable by all
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_config(root, host, user, os.cpu_count() or 1))
    cluster = SlurmCluster(root)
    env = cluster.env(dict(os.environ))

    def start(name: str, args: list[str]) -> None:
        log = open(root / "log" / f"{name}.out", "wb")
        cluster.procs[name] = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    sock = root / "munge" / "munge.sock"
    start(
        "munged",
        [
            MUNGED,
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={root}/munge/munged.pid",
            f"--log-file={root}/log/munged.log",
            f"--seed-file={root}/munge/seed",
        ],
    )
    _wait(cluster, sock.exists, "munged's socket")
    start("slurmctld", [SLURMCTLD, "-D", "-i", "-f", str(conf)])
    start("slurmd", [SLURMD, "-D", "-N", NODE, "-f", str(conf)])

    def idle() -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=10)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    try:
        _wait(cluster, idle, "the node to be idle")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """A one-node cluster for the module (skipped without slurm-wlm + munge, unless required)."""
    require("slurm", SRUN, MUNGED, SLURMCTLD, SLURMD)
    root = Path(tempfile.mkdtemp(prefix="rwslurm", dir="/tmp"))
    try:
        cluster = start_cluster(root)
        yield cluster
        cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
