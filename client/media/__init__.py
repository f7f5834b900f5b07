"""Rich media for ``log()``: the types wandb's ``log()`` accepts, encoded on the I/O thread.

Every type is a :class:`client.values.WireValue`. Its constructor runs on the training loop's
thread: it validates (``ValueError`` naming the argument) and copies the data, nothing more.
``_to_wire()`` runs on the writer's I/O thread and returns a msgpack-able dict with a
``_type`` (see docs/media.md for every wire format). Optional libraries (Pillow, matplotlib,
plotly, imageio-ffmpeg, pandas) are imported only when used; a missing one raises an
ImportError naming the ``rankwise[media]`` extra.
"""

from __future__ import annotations

from client.media.audio import Audio
from client.media.chart import Chart
from client.media.figures import Plotly
from client.media.histogram import Histogram
from client.media.html import Html
from client.media.image import Image
from client.media.object3d import Object3D
from client.media.table import Table
from client.media.video import Video

__all__ = ["Audio", "Chart", "Histogram", "Html", "Image", "Object3D", "Plotly", "Table", "Video"]
