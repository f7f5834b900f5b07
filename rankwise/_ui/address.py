"""Where ``rankwise ui`` answers: its default port and the address of a group's page, for the server
(rankwise/_ui/server.py) and for what prints or returns such an address without serving it (``rankwise
demo``, the wandb-style ``run.url`` of rankwise/_api_wandb.py). Standard library only, no server code."""

from __future__ import annotations

from urllib.parse import quote, urlencode

DEFAULT_PORT = 8765


def group_url(
    project: str, group: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None
) -> str:
    """The address of a group's page on a ``rankwise ui`` server at ``host:port`` (with the server's token,
    when given: the address then works in a browser that has not opened the server yet)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    query = f"?{urlencode({'token': token})}" if token else ""
    return f"http://{host}:{port}/g/{quote(project, safe='')}/{quote(group, safe='')}{query}"
