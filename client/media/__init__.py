"""Rich media for ``log()``: the types wandb's ``log()`` accepts, encoded on the I/O thread.

Every type is a :class:`client.media._base.WireValue`. Its constructor runs on the training loop's
thread: it validates (``ValueError`` naming the argument) and copies the data, nothing more.
``_to_wire()`` runs on the writer's I/O thread and returns a msgpack-able dict with a
``_type`` (see docs/media.md for every wire format). Optional libraries (Pillow, matplotlib,
plotly, imageio-ffmpeg, pandas) are imported only when used; a missing one raises an
ImportError naming the ``rankwise[media]`` extra.

The types are imported on first access (``client.media.Image``): ``client.values`` imports
``client.media._base`` and ``client.media.convert`` on every ``import rankwise``, which must not
load every media module (and numpy with ``image``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Audio", "Chart", "Histogram", "Html", "Image", "Object3D", "Plotly", "Table", "Video"]


def __getattr__(name: str) -> Any:
    if name == "Audio":
        from client.media.audio import Audio as value
    elif name == "Chart":
        from client.media.chart import Chart as value
    elif name == "Plotly":
        from client.media.figures import Plotly as value
    elif name == "Histogram":
        from client.media.histogram import Histogram as value
    elif name == "Html":
        from client.media.html import Html as value
    elif name == "Image":
        from client.media.image import Image as value
    elif name == "Object3D":
        from client.media.object3d import Object3D as value
    elif name == "Table":
        from client.media.table import Table as value
    elif name == "Video":
        from client.media.video import Video as value
    else:
        raise AttributeError(f"module 'client.media' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
