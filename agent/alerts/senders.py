"""How one alert reaches a sink, on a notifier's worker thread (agent/alerts/notify.py): a command or a webhook.

* ``RANKWISE_ALERT_CMD``: the command (split like a shell would, ``shlex``, but run without one) gets the
  alert as one JSON object on its standard input, once per alert. Exit status 0 counts as sent; anything
  else, or no exit within the timeout (the command is killed), as failed, logged with the last line of its
  standard error.
* ``RANKWISE_ALERT_WEBHOOK``: a Slack-compatible POST, ``{"text": "<one line>", ...the alert's fields}``
  (urllib, stdlib). A connection error, a timeout, 429 or 5xx is retried (``ATTEMPTS`` tries in all, waiting
  ``BACKOFF_S`` doubling in between); another 4xx fails at once (retrying would not change the answer).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

ATTEMPTS = 4
BACKOFF_S = 0.5


class SendFailed(Exception):
    """The alert did not get through; the message says why (logged and shown as ``last_error``)."""


def command_sender(setting: str, timeout_s: float, stopping: threading.Event) -> Callable[[dict], None]:
    argv = shlex.split(setting)
    if not argv:
        raise ValueError(f"RANKWISE_ALERT_CMD={setting!r} names no command")

    def send(item: dict) -> None:
        data = json.dumps(item, sort_keys=True, default=str).encode()
        try:
            done = subprocess.run(argv, input=data, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise SendFailed(f"{argv[0]} did not exit within {timeout_s:g} s (killed)") from None
        except OSError as exc:
            raise SendFailed(f"{argv[0]} could not run: {exc}") from None
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise SendFailed(f"{argv[0]} exited {done.returncode}" + (f": {lines[-1][:200]}" if lines else ""))

    return send


def webhook_text(item: dict) -> str:
    """The one line a chat shows: level, kind, group and the alert's message."""
    where = f"{item['project']}/{item['group']}" if item.get("group") else "rankwise"
    return f"[{item['level']}] {item['kind']} in {where}: {item['message']}"


def webhook_sender(setting: str, timeout_s: float, stopping: threading.Event) -> Callable[[dict], None]:
    parts = urlsplit(setting)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"RANKWISE_ALERT_WEBHOOK={setting!r} is not an http:// or https:// address")
    import urllib.error  # (here: an agent without a webhook never loads the HTTP client)
    import urllib.request

    def post(body: bytes) -> None:
        request = urllib.request.Request(setting, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            answer.read()

    def send(item: dict) -> None:
        body = json.dumps({"text": webhook_text(item), **item}, default=str).encode()
        error = ""
        for attempt in range(ATTEMPTS):
            if attempt and stopping.wait(BACKOFF_S * 2 ** (attempt - 1)):
                break  # the agent is exiting: no more waiting
            try:
                post(body)
                return
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code} {exc.reason}"
                if exc.code != 429 and exc.code < 500:
                    break
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, bad responses
                error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        raise SendFailed(f"POST {parts.scheme}://{parts.netloc}{parts.path}: {error} after {attempt + 1} tries")

    return send
