"""The ``slurm`` fixture of test_slurm.py (tests/launchers/slurmcluster.py), found by pytest here rather than imported
by the test module, where its parameters would shadow the import."""

from slurmcluster import slurm  # noqa: F401  (the fixture)
