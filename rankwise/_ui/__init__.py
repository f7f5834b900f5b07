"""The web UI of ``rankwise ui``: a read-only HTTP server over the store (:mod:`.server`), its JSON API
(:mod:`.api` routes and serves groups, :mod:`.charts` the chart data, :mod:`.media` the media panels' data
and the media files, :mod:`.params` checks parameters), the store access with its cache (:mod:`.data`), the
series reduction (:mod:`.series`) and the page (``static/``: plain JavaScript modules, uPlot vendored; media
panels, charts and the 3-D viewer drawn on canvases without a library).

Nothing here is imported by ``import rankwise``; the CLI imports it when asked for ``rankwise ui``.
"""

from __future__ import annotations

from rankwise._ui.server import DEFAULT_PORT, group_url, make_server, serve

__all__ = ["DEFAULT_PORT", "group_url", "make_server", "serve"]
