"""What a ZeroMQ socket holds right now: the agent's sockets are read without blocking, in the loop's turn.

    for frame in queued(sock.recv):                 # every frame queued now, then the loop goes on
    for msg in queued(sock.recv_multipart):
    for event in queued(lambda flags: recv_monitor_message(sock, flags)):

The agent's loop (agent/loop.py) drains its ROUTER socket itself (it counts frames and stops early when a
commit is due); the ZAP handler, the monitor and the link to the root read everything that waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


def queued(recv: Callable[[int], T]) -> Iterator[T]:
    """``recv(zmq.NOBLOCK)`` until the socket has nothing more: what it held when asked (and what arrives
    while the caller works through it)."""
    import zmq

    while True:
        try:
            yield recv(zmq.NOBLOCK)
        except zmq.Again:
            return
