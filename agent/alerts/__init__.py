"""Alerts: what the agent tells about a group's health (a NaN, a hung or slow rank, a crash, a user's alert).

An :class:`Alert` is raised by a detector (a :class:`agent.sinks.base.Part` on the data the agent already
has) into the agent's :class:`AlertBook`, which de-duplicates it and puts it into the next commit: it is
stored with the history in one transaction (``alerts`` table, read as ``Reader.alerts``), then handed to
the alert sinks (a command, a webhook). docs/architecture.md has the table of detectors.
"""
