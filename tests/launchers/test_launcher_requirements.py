"""Where a launcher is not installed (a developer's machine) its tests skip and say what to install;
under RANKWISE_REQUIRE_LAUNCHERS=1 (CI, set by .ci/run) the same absence is a failure."""

from __future__ import annotations

import lchelp
import pytest


def test_missing_launcher_skips_with_the_install_command(monkeypatch):
    """Without RANKWISE_REQUIRE_LAUNCHERS a missing binary skips, naming it and the apt-get line."""
    monkeypatch.setattr(lchelp, "REQUIRE", False)
    with pytest.raises(pytest.skip.Exception, match=r"/nonexistent/mpiexec missing \(apt-get install -y mpich\)"):
        lchelp.require("mpich", "/nonexistent/mpiexec")
    lchelp.require("mpich", "/bin/sh")  # present: nothing happens


def test_missing_launcher_fails_when_required(monkeypatch):
    """RANKWISE_REQUIRE_LAUNCHERS=1 turns the skip into a failure with the same reason."""
    monkeypatch.setattr(lchelp, "REQUIRE", True)
    with pytest.raises(pytest.fail.Exception, match=r"RANKWISE_REQUIRE_LAUNCHERS=1 but /nonexistent/srun missing"):
        lchelp.require("slurm", "/nonexistent/srun")
