"""``Html``: wandb's ``wandb.Html(data, inject=True, data_is_not_path=False)``.

``data`` is a path to an ``.html``/``.htm`` file (read now), literal HTML (a ``str`` that is
not such a path, or any string with ``data_is_not_path=True``), or a file object whose
``read()`` returns str or bytes. ``inject=True`` adds a small inline stylesheet (system font,
8 px margin) and ``<base target="_blank">`` (links open outside the UI's frame) at the start
of ``<head>`` (a ``<head>`` is created when there is none). wandb injects a link to a
stylesheet on its servers instead; rankwise never makes logged HTML load remote resources.
The UI should show it in a sandboxed iframe.

Wire: ``{"_type": "html", "format": "html", "sha256", "size", "bytes" (UTF-8), "caption": None}``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from client.errors import InvalidArgumentError
from client.media._base import MAX_MEDIA_BYTES, Media, payload, read_path

INJECTED = (
    '<base target="_blank"><style>body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;'
    "margin:8px}</style>"
)
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)
_HTML = re.compile(r"<html(\s[^>]*)?>", re.IGNORECASE)


def inject_head(html: str) -> str:
    m = _HEAD.search(html)
    if m:
        return html[: m.end()] + INJECTED + html[m.end() :]
    m = _HTML.search(html)
    if m:
        return html[: m.end()] + "<head>" + INJECTED + "</head>" + html[m.end() :]
    return "<head>" + INJECTED + "</head>" + html


class Html(Media):
    """An HTML document (string, file object or .html path)."""

    _type = "html"

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False) -> None:
        self.caption = None
        if hasattr(data, "read"):
            text = data.read()
        elif isinstance(data, os.PathLike) or (
            isinstance(data, str)
            and not data_is_not_path
            and data.lower().endswith((".html", ".htm"))
            and os.path.isfile(data)
        ):
            text = read_path(data, "data")
        elif isinstance(data, str):
            if not data_is_not_path and "<" not in data and data.lower().endswith((".html", ".htm")):
                raise InvalidArgumentError(
                    f"data={data!r}: no such file (pass data_is_not_path=True to log the text itself)"
                )
            text = data
        else:
            raise InvalidArgumentError(
                f"data must be HTML text, a file object or a path to an .html file, got {type(data).__name__}"
            )
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgumentError("data: HTML must be UTF-8 encoded") from None
        if not isinstance(text, str):
            raise InvalidArgumentError(f"data: read() returned {type(text).__name__}, expected str or bytes")
        self.inject = bool(inject)
        self._text: str | None = text
        if len(text) > MAX_MEDIA_BYTES:
            raise InvalidArgumentError(
                f"data: {len(text)} characters of HTML is more than the {MAX_MEDIA_BYTES >> 20} MiB limit"
            )

    @property
    def html(self) -> str:
        """The document as it will be logged (with the injected head when ``inject``)."""
        text = self._text
        if text is None:  # encoded and released: the logged bytes are the document
            return self._to_wire().get("bytes", b"").decode("utf-8")
        return inject_head(text) if self.inject else text

    def _nbytes_hint(self) -> int:
        return len(self._text) * 2 + 512 if self._text is not None else 256

    def _encode(self) -> dict:
        assert self._text is not None
        text = inject_head(self._text) if self.inject else self._text
        return payload("html", "html", text.encode("utf-8"), None)

    def _release(self) -> None:
        self._text = None
