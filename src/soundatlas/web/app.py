"""The web app: a read-only JSON and binary API over one atlas, plus the static page.

``create_app(atlas_dir)`` assembles it from the parts of this package:

- ``state``: ``WebState``, what the app keeps between requests (settings, cached indexes);
- ``deps``: the lookups the routers share (``web_state``, ``model_or_404``, ...);
- ``responses``: JSON errors and their handlers, binary and file responses (HTTP Range);
- ``security``: the middlewares (same origin, allowed hosts);
- ``uploads``: multipart uploads to a temporary file, with a size limit;
- ``client``: one request to the app in this process (``soundatlas serve --get``);
- ``routers``: one module per resource of the API, each an ``APIRouter`` named ``router``.

To add an endpoint, write it in a router module (or a new one listed in ``ROUTERS`` below);
it looks things up through ``deps`` and answers errors with ``responses.api_error``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from soundatlas import __version__
from soundatlas.atlas import Atlas
from soundatlas.errors import ParameterError
from soundatlas.web.client import call, describe_response
from soundatlas.web.deps import EMBED_HINT, MAX_K, model_or_404, sorted_values, web_state
from soundatlas.web.osc import EventHub, OscIn, OscOut, parse_endpoint
from soundatlas.web.responses import api_error, binary_response, install_error_handlers
from soundatlas.web.routers import atlas as atlas_router
from soundatlas.web.routers import (
    curation,
    events,
    export,
    files,
    kits,
    labels,
    models,
    pages,
    samples,
    sound,
)
from soundatlas.web.routers.pages import STATIC_DIR
from soundatlas.web.security import install_security, is_loopback_host
from soundatlas.web.state import APPROXIMATE_ABOVE, WebState, end_streams

# the names below are also imported from here by the CLI, the benchmarks and older callers
__all__ = ["create_app", "APPROXIMATE_ABOVE", "ROUTERS", "call", "describe_response",
           "end_streams", "is_loopback_host", "STATIC_DIR", "EMBED_HINT", "MAX_K", "WebState",
           "api_error", "binary_response", "model_or_404", "sorted_values", "web_state"]

#: the API's routers, in the order they are included
ROUTERS: tuple[APIRouter, ...] = tuple(m.router for m in (
    atlas_router, samples, labels, curation, models, sound, files, export, kits, events,
    pages))


def _unwritable(atlas_dir: Path) -> str | None:
    """Why this process cannot write the atlas (its directory, for SQLite's journal, and its
    database), or None when it can."""
    from soundatlas.atlas import DB_NAME

    for path in (atlas_dir, atlas_dir / DB_NAME):
        if not os.access(path, os.W_OK):
            return f"{path} is not writable by this process"
    return None


def create_app(atlas_dir: str | os.PathLike, *, model: str | None = None,
               max_upload_bytes: int = 50 * 2**20, max_export_bytes: int = 2 * 2**30,
               allowed_hosts: Iterable[str] | None = None, osc_out: str | None = None,
               osc_in: str | None = None, approximate_above: int | None = APPROXIMATE_ABOVE,
               read_only: bool = False, render_queue: int = 4,
               extra_routers: Iterable[APIRouter] = ()) -> FastAPI:
    """The web app for an atlas: it reads the atlas, and writes only the user's layer (tags,
    stars, notes, collections: ``atlas.curation``) unless ``read_only``.

    Parameters
    ----------
    atlas_dir : path-like
        The atlas directory.
    model : str, optional
        The model the page shows first (default: the first fully embedded one).
    max_upload_bytes : int, optional
        The largest query or mosaic upload (413 beyond).
    max_export_bytes : int, optional
        The largest zip export (413 beyond).
    allowed_hosts : iterable of str, optional
        The Host header names accepted (None: any). Serving on a loopback address passes the
        loopback names, so a web page elsewhere cannot reach the API through DNS rebinding.
    osc_out : str, optional
        ``HOST:PORT``: send the page's events there as OSC.
    osc_in : str, optional
        ``[HOST:]PORT`` (host 127.0.0.1 unless given; port 0 picks a free one): listen for OSC
        there while the app runs (from its startup to its shutdown) and pass what arrives to
        the page (see ``soundatlas.web.osc``).
    approximate_above : int or None, optional
        Models with more similarity vectors than this answer nearest-sound searches
        approximately unless a request asks ``exact`` (default ``APPROXIMATE_ABOVE``); None:
        always exactly.
    read_only : bool, default False
        Never write, not even the user's layer (also the case, with the reason in
        ``/api/curation``, when the atlas's directory or database cannot be written).
    render_queue : int, default 4
        Renders (``synth``, ``mosaic``) that may wait while one runs; one more is answered 503
        with Retry-After. A render whose client disconnects stops (``GET /api/renders`` counts
        them).
    extra_routers : iterable of fastapi.APIRouter, optional
        Routers included after ``ROUTERS`` (an endpoint added without editing this package).

    Returns
    -------
    fastapi.FastAPI
        The app; its ``state.web`` is the :class:`WebState`.

    Raises
    ------
    ParameterError
        For a limit below 1, a render queue below 0 or a bad OSC address.
    AtlasError
        When the atlas cannot be opened or has no model ``model``.
    """
    atlas_dir = Path(atlas_dir)
    if max_upload_bytes < 1:
        raise ParameterError(f"max_upload_bytes={max_upload_bytes} must be at least 1")
    if max_export_bytes < 1:
        raise ParameterError(f"max_export_bytes={max_export_bytes} must be at least 1")
    if approximate_above is not None and approximate_above < 0:
        raise ParameterError(f"approximate_above={approximate_above} must be at least 0")
    if isinstance(render_queue, bool) or not isinstance(render_queue, int) or render_queue < 0:
        raise ParameterError(f"render_queue={render_queue!r} must be an integer >= 0")
    with Atlas.open(atlas_dir) as atlas:  # fail now, with the atlas's own message
        if model is not None:
            atlas.model(model)
    why_read_only = ("started read-only (serve --read-only)" if read_only
                     else _unwritable(atlas_dir))

    out = OscOut(parse_endpoint(osc_out, what="osc_out")) if osc_out else None
    hub = EventHub()
    listener = None
    if osc_in is not None:
        listener = OscIn(parse_endpoint(osc_in, what="osc_in", default_host="127.0.0.1",
                                        allow_zero=True), hub)

    @asynccontextmanager
    async def lifespan(app):
        app.state.web.warm()  # the database read through once, in the background
        if listener is not None:
            listener.start()
        try:
            yield
        finally:
            if listener is not None:
                listener.stop()
                hub.publish(None)  # open event streams end

    app = FastAPI(title="soundatlas", version=__version__, docs_url=None, redoc_url=None,
                  lifespan=lifespan,
                  description="The API of a soundatlas atlas: the map's points as binary "
                  "arrays, samples, labels, neighbours, analogies, query by example, paths "
                  "rendered as sound and mosaics, audio with HTTP Range, export; and the "
                  "user's tags, stars, notes and collections, the one thing it writes.")
    app.state.web = WebState(atlas_dir, model=model, max_upload_bytes=max_upload_bytes,
                             max_export_bytes=max_export_bytes, osc_out=out, osc_in=listener,
                             events=hub, approximate_above=approximate_above,
                             read_only=why_read_only, render_queue=render_queue)
    install_error_handlers(app)
    install_security(app, allowed_hosts)
    for router in (*ROUTERS, *extra_routers):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
