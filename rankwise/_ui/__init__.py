"""The web UI of ``rankwise ui``: a read-only HTTP server over the store (:mod:`.server`; each request
answered by :mod:`.handler`, a group's live event stream by :mod:`.events`, addresses by :mod:`.address`),
its JSON API (:mod:`.api` routes and serves groups, :mod:`.charts` the chart data, :mod:`.media` the media
panels' data and the media files, :mod:`.params` checks parameters), the store access with its cache
(:mod:`.data`), the series reduction (:mod:`.series`) and the page (``static/``: plain JavaScript modules,
uPlot vendored; media panels, charts and the 3-D viewer drawn on canvases without a library).

Nothing here is imported by ``import rankwise``; the CLI imports it when asked for ``rankwise ui``. This
package module imports nothing itself, so reaching one light module (:mod:`.address`) loads only that.
"""
