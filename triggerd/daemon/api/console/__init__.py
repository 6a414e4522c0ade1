"""The operator's console: web pages on the control API's own app, under ``/ui/``.

Server-rendered with Jinja2 (:mod:`.pages`, the templates in ``templates/``), one
stylesheet and one script in ``static/``: everything ships in the package, nothing is
fetched from elsewhere, and every page reads without JavaScript. The script
(``console.js``) updates the pages live from :mod:`.stream` (server-sent events).
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles

from .pages import routes
from .stream import routes as stream_routes

__all__ = ["STATIC_PATH", "routes", "static_files"]

routes.include_router(stream_routes)  # /ui/stream: the event log, live (server-sent events)

#: Where the app mounts :func:`static_files`.
STATIC_PATH = "/ui/static"


def static_files() -> StaticFiles:
    """The console's stylesheet and script (console.js), served from the package."""
    return StaticFiles(directory=Path(__file__).parent / "static")
