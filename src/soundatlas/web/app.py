"""The web app: a read-only JSON and binary API over one atlas, plus the static page.

``create_app(atlas_dir)`` builds a FastAPI app; the routers in ``soundatlas.web.routers`` (one per
resource) do the work through the helpers here. The atlas is only ever opened read-only, and once
per request inside the endpoint's own thread (an sqlite3 connection belongs to the thread that
opened it, and opening is cheap). What is costly to rebuild is cached on the app: each model's
points with their KD-tree and its similarity vectors with their index (``soundatlas.similarity``;
both rebuilt when the model's embeddings change) and loaded model weights.

Every error is JSON ``{"error": "message"}`` with its status; files are served with HTTP Range
support; a library file is only ever one that resolves inside the library root.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import mimetypes
import os
import re
import stat
import threading
import unicodedata
from collections.abc import Iterable
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from soundatlas import __version__
from soundatlas.atlas import Atlas, SampleRecord
from soundatlas.errors import AtlasError, AudioReadError, ParameterError, SoundAtlasError

__all__ = ["create_app", "call", "is_loopback_host", "STATIC_DIR", "EMBED_HINT"]

STATIC_DIR = Path(__file__).parent / "static"
EMBED_HINT = "run: soundatlas map LIBRARY (or soundatlas embed --atlas A --model M)"
MAX_K = 200

# a library file's response may not run as a page of this origin (a sample pack's README.html)
_FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
_AUDIO_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".bwf": "audio/wav", ".rf64": "audio/wav",
    ".w64": "audio/x-w64", ".aif": "audio/aiff", ".aiff": "audio/aiff", ".aifc": "audio/aiff",
    ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
    ".mp3": "audio/mpeg", ".mp2": "audio/mpeg", ".au": "audio/basic", ".snd": "audio/basic",
    ".caf": "audio/x-caf",
}
# what a path may still hold after the server decoded it once: an encoded dot, slash, backslash,
# NUL or percent means it was encoded twice to slip past a check
_ENCODED = re.compile(r"%(2e|2f|5c|00|25)", re.IGNORECASE)


# -- state ---------------------------------------------------------------------------------------


@dataclass
class PointIndex:
    """One model's points (ids ascending) and a KD-tree over them."""

    ids: np.ndarray  # int64, ascending
    points: np.ndarray  # float32, n x dims
    tree: object  # scipy.spatial.cKDTree

    @property
    def dims(self) -> int:
        return int(self.points.shape[1])

    def point(self, sample_id: int) -> np.ndarray | None:
        row = int(np.searchsorted(self.ids, sample_id))
        if row < len(self.ids) and self.ids[row] == sample_id:
            return self.points[row]
        return None

    def nearest(self, point, k: int, *, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
        """The ``k`` samples nearest ``point`` (Euclidean), nearest first, none of ``exclude``."""
        exclude = set(int(i) for i in exclude)
        n = len(self.ids)
        want = min(n, k + len(exclude))
        if want == 0:
            return []
        dist, rows = self.tree.query(np.asarray(point, dtype=np.float64), k=want)
        out = []
        for d, r in zip(np.atleast_1d(dist), np.atleast_1d(rows)):
            if r >= n:  # scipy pads missing neighbours with n
                break
            sid = int(self.ids[r])
            if sid not in exclude:
                out.append((sid, float(d)))
        return out[:k]


@dataclass
class SimilarityIndex:
    """One model's similarity vectors (``soundatlas.similarity``) and their exact index; without
    a complete set of vectors ``index`` is None and ``message`` says why and what adds them."""

    index: object | None  # similarity.VectorIndex
    space: dict | None  # the atlas's record of the space
    message: str | None = None


class WebState:
    """What the app keeps between requests: where the atlas is, settings and caches."""

    def __init__(self, atlas_dir: Path, *, model: str | None, max_upload_bytes: int,
                 max_export_bytes: int, osc_out=None, osc_in=None, events=None):
        self.atlas_dir = atlas_dir
        self.osc_out = osc_out  # osc.OscOut, or None
        self.osc_in = osc_in  # osc.OscIn, or None
        self.events = events  # osc.EventHub, or None
        self.model = model
        self.max_upload_bytes = max_upload_bytes
        self.max_export_bytes = max_export_bytes
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()  # one build of an index at a time (they are large)
        self._indexes: dict[str, tuple[tuple, PointIndex]] = {}  # name -> (points_key, index)
        self._vectors: dict[str, tuple[tuple, SimilarityIndex]] = {}  # name -> (key, index)
        self._artifacts: dict[tuple, object] = {}
        self._frames: dict[str, tuple[tuple, object]] = {}  # name -> (points_key, FrameIndex)
        self._audio: object = None  # synth.AudioCache shared by renders, at one output rate
        self.render_lock = threading.Lock()  # one render at a time: each is CPU-bound anyway

    @contextmanager
    def atlas(self):
        """The atlas, read-only, for the calling thread."""
        with Atlas.open(self.atlas_dir) as atlas:
            yield atlas

    def point_index(self, atlas: Atlas, model: dict) -> PointIndex:
        """The model's points and KD-tree, rebuilt when its embeddings changed."""
        from scipy.spatial import cKDTree

        def build() -> PointIndex:
            ids, points = atlas.points(model["id"])
            if len(ids) == 0:
                points = np.zeros((0, model_dims(model)), np.float32)
            return PointIndex(ids, points, cKDTree(points.astype(np.float64)))

        return self._cached(self._indexes, model["name"], points_key(atlas, model), build)

    def similarity_index(self, atlas: Atlas, model: dict) -> SimilarityIndex:
        """The model's similarity vectors and index, rebuilt when its embeddings or vectors
        changed; without a vector for every embedded sample, none (and the message why)."""
        from soundatlas.similarity import VectorIndex, missing_message

        space = atlas.similarity_space(model["id"])
        key = (*points_key(atlas, model), None if space is None else
               (space["name"], space["updated"]))

        def build() -> SimilarityIndex:
            if space is None:
                return SimilarityIndex(None, None, missing_message(atlas, model, 0))
            ids, codes = atlas.similarity_vectors(model["id"])
            if len(ids) < model["n_embedded"]:
                return SimilarityIndex(None, space, missing_message(atlas, model, len(ids)))
            return SimilarityIndex(VectorIndex(ids, codes, scale=space["spec"]["scale"]), space)

        return self._cached(self._vectors, model["name"], key, build)

    def frame_index(self, atlas: Atlas, model: dict):
        """The model's :class:`synth.FrameIndex` (every sounding frame), kept while the model's
        embeddings stay the same; read from the CLI's cache when that is current, never written
        (the server only reads the atlas)."""
        from soundatlas.synth import FrameIndex

        return self._cached(self._frames, model["name"], points_key(atlas, model),
                            lambda: FrameIndex.load(atlas, model, cache="read"))

    def _cached(self, store: dict, name: str, key: tuple, build):
        """``store[name]``'s value while its key is ``key``, else ``build()``'s, stored. Builds
        run one at a time, so requests arriving together build a large index once."""
        with self._lock:
            cached = store.get(name)
        if cached and cached[0] == key:
            return cached[1]
        with self._build_lock:
            with self._lock:  # built by another request meanwhile?
                cached = store.get(name)
            if cached and cached[0] == key:
                return cached[1]
            value = build()
            with self._lock:
                store[name] = (key, value)
        return value

    def audio_cache(self, library: Path, sr: int):
        """Decoded originals shared between renders (call with ``render_lock`` held)."""
        from soundatlas.synth import AudioCache

        if self._audio is None or (self._audio.library, self._audio.sr) != (library, sr):
            self._audio = AudioCache(library, sr)
        return self._audio

    def artifact(self, atlas: Atlas, model: dict):
        """The model's loaded weights (cached), refused when its CQT differs from the atlas's."""
        from soundatlas.artifact import check_cqt, resolve_model

        key = (model["name"], model["id"], model["dir"], model["created"])
        with self._lock:
            artifact = self._artifacts.get(key)
        if artifact is None:
            artifact, _ = resolve_model(atlas, model["name"])
            with self._lock:
                self._artifacts = {k: v for k, v in self._artifacts.items() if k[0] != key[0]}
                self._artifacts[key] = artifact
        try:
            check_cqt(artifact, atlas.cqt_params)
        except SoundAtlasError as exc:
            raise api_error(409, str(exc)) from None
        return artifact


def points_key(atlas: Atlas, model: dict) -> tuple:
    """What changes whenever the model's points do: the model registered again, samples
    embedded (again) or removed."""
    return (model["id"], model["created"], model["n_embedded"],
            atlas.newest_embedding_segment(model["id"]))


def web_state(request: Request) -> WebState:
    return request.app.state.web


# -- errors --------------------------------------------------------------------------------------


def api_error(status: int, message: str, *, headers: dict | None = None, **extra) -> HTTPException:
    """An HTTPException whose JSON body is ``{"error": message, **extra}``."""
    return HTTPException(status_code=status, detail={"error": message, **extra}, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if isinstance(detail, dict):
        body = detail
    else:
        text = str(detail)
        phrase = _phrase(exc.status_code)
        if text == phrase:  # the framework's own (no route, wrong method): say for what
            text = f"{phrase}: {request.method} {request.url.path}"
        body = {"error": text}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for e in exc.errors():
        where = ".".join(str(part) for part in e.get("loc", ()))
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, status_code=422)


async def _project_error(request: Request, exc: SoundAtlasError) -> JSONResponse:
    # a bad parameter or file is the request's fault; anything else (an atlas gone missing or
    # inconsistent, a model that cannot load) is the server's
    status = 400 if isinstance(exc, (ParameterError, AudioReadError)) else 500
    return JSONResponse({"error": str(exc)}, status_code=status)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)


# -- atlas lookups shared by the routers ---------------------------------------------------------


def model_dims(model: dict) -> int:
    return int(model["config"].get("architecture", {}).get("dims", 3))


def model_summary(model: dict) -> dict:
    return {
        "name": model["name"],
        "neighbourhood": model["config"].get("neighbourhood", {}).get("name"),
        "n_embedded": model["n_embedded"],
        "dims": model_dims(model),
    }


def model_or_404(atlas: Atlas, name: str) -> dict:
    try:
        return atlas.model(name)
    except AtlasError:
        known = ", ".join(m["name"] for m in atlas.models()) or "none"
        raise api_error(404, f"no model {name!r} in this atlas (known: {known})") from None


def require_embeddings(model: dict) -> None:
    """409 with the command that makes them when the model has no embeddings yet."""
    if model["n_embedded"] == 0:
        command = f"soundatlas embed --atlas A --model {model['name']}"
        raise api_error(409, f"model {model['name']!r} has no embeddings yet; run: {command}",
                        hint=EMBED_HINT)


def default_model(atlas: Atlas, given: str | None) -> str | None:
    """The model the page shows first: the one given, else the first fully embedded one."""
    if given:
        return given
    n = atlas.n_samples()
    for m in atlas.models():
        if n > 0 and m["n_embedded"] >= n:
            return m["name"]
    return None


def sample_or_404(atlas: Atlas, sample_id: int) -> SampleRecord:
    found = atlas.samples([sample_id])
    if not found:
        raise api_error(404, f"no sample with id {sample_id} in this atlas")
    return found[0]


def point_or_404(index: PointIndex, sample_id: int, model: dict) -> np.ndarray:
    point = index.point(sample_id)
    if point is None:
        raise api_error(404, f"sample {sample_id} has no point for model {model['name']!r} "
                        "(unknown id, or not embedded yet)")
    return point


def neighbour_items(atlas: Atlas, pairs: list[tuple[int, float]]) -> list[dict]:
    """(id, distance) pairs as ``{id, distance, path, labels}``, in the given order."""
    records = {r.id: r for r in atlas.samples([sid for sid, _ in pairs])}
    return [{"id": sid, "distance": d, "path": records[sid].path,
             "labels": atlas.sample_labels(sid)} for sid, d in pairs if sid in records]


def sorted_values(values: Iterable[str]) -> list[str]:
    """Distinct label values, in numeric order when every one is a finite number."""
    values = sorted(set(values))
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return values
    if not all(math.isfinite(x) for x in numbers):
        return values
    return [v for _, v in sorted(zip(numbers, values))]


def all_labels(atlas: Atlas) -> dict[str, dict[int, str]]:
    """label key -> {sample id: value}, every key."""
    return {key: atlas.labels(key) for key in atlas.label_summary()}


def sample_duration(record: SampleRecord) -> float:
    """The file's length in seconds when known, else the seconds analysed."""
    return record.file_duration if record.file_duration is not None else record.duration


# -- binary and file responses -------------------------------------------------------------------


def attachment_header(filename: str) -> str:
    """A Content-Disposition naming ``filename`` for any characters: an ASCII fallback, and the
    exact name as RFC 6266/5987 ``filename*``."""
    from urllib.parse import quote

    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_"
                       for c in filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def binary_response(payload: bytes, headers: dict[str, object]) -> Response:
    return Response(payload, media_type="application/octet-stream",
                    headers={k: str(v) for k, v in headers.items()})


def media_type_for(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext in _AUDIO_TYPES:
        return _AUDIO_TYPES[ext]
    return mimetypes.guess_type(Path(path).name)[0] or "application/octet-stream"


def file_response(request: Request, path: Path, *, st: os.stat_result | None = None,
                  media_type: str | None = None, filename: str | None = None,
                  background=None) -> FileResponse:
    """Stream a file with HTTP Range support (starlette's); bad ranges become JSON errors."""
    st = st or os.stat(path)
    response = FileResponse(path, stat_result=st, media_type=media_type or media_type_for(path),
                            filename=filename, headers=_FILE_HEADERS, background=background)
    http_range = request.headers.get("range")
    if http_range is None or request.method not in ("GET", "HEAD"):
        return response
    if_range = request.headers.get("if-range")
    if if_range is not None and (if_range.startswith("W/") or if_range not in (
            response.headers["etag"], response.headers["last-modified"])):
        return response  # the file changed since: the whole file, as RFC 9110 says
    try:
        FileResponse._parse_range_header(http_range, st.st_size)  # noqa: SLF001 - same rules
    except MalformedRangeHeader as exc:
        _cleanup(background)
        raise api_error(400, f"bad Range header {http_range!r}: {exc.content}") from None
    except RangeNotSatisfiable:
        _cleanup(background)
        raise api_error(416, f"Range {http_range!r} is outside the file ({st.st_size} bytes)",
                        headers={"Content-Range": f"bytes */{st.st_size}"}) from None
    return response


def _cleanup(background) -> None:
    if background is not None:
        background.func(*background.args, **background.kwargs)


def library_file(root: Path, rel: str, *, deny: Path | None = None) -> tuple[Path, os.stat_result]:
    """The regular file at ``rel`` inside the library ``root``, else a 404 that says nothing of
    what exists outside: no ``..``, no absolute path, no backslash, NUL or still-encoded
    character, no hidden file or folder (the atlas usually lives in one), nothing under ``deny``
    (the atlas directory), and a symlink only when its target resolves inside the root."""
    refused = api_error(404, f"not a file of the library: {rel!r}")
    if not rel or "\x00" in rel or "\\" in rel or _ENCODED.search(rel):
        raise refused
    if rel.startswith("/") or re.match(r"[A-Za-z]:", rel):
        raise refused
    for part in rel.split("/"):
        # NFKC folds look-alike dots (one-dot leader, fullwidth full stop) into '.'
        folded = unicodedata.normalize("NFKC", part)
        if folded.startswith(".") and part != ".":
            raise refused
    try:
        real_root = root.resolve()
        target = (root / rel).resolve()
        inside = target.relative_to(real_root)
        if not inside.parts or any(p.startswith(".") for p in inside.parts):
            raise refused
        if deny is not None and target.is_relative_to(deny.resolve()):
            raise refused
        st = os.stat(target)
    except (OSError, RuntimeError, ValueError):
        raise refused from None
    if not stat.S_ISREG(st.st_mode):
        raise refused
    return target, st


def sample_file(root: Path, record: SampleRecord) -> tuple[Path, os.stat_result]:
    """The indexed file of a sample (which may live in a symlinked folder the scan followed)."""
    rel = record.path
    gone = api_error(404, f"sample {record.id}'s file {rel!r} is no longer in the library")
    if rel.startswith("/") or ".." in rel.split("/"):
        raise gone
    path = root / rel
    try:
        st = os.stat(path)
    except OSError:
        raise gone from None
    if not stat.S_ISREG(st.st_mode):
        raise gone
    return path, st


# -- the app -------------------------------------------------------------------------------------


def create_app(atlas_dir: str | os.PathLike, *, model: str | None = None,
               max_upload_bytes: int = 50 * 2**20, max_export_bytes: int = 2 * 2**30,
               allowed_hosts: Iterable[str] | None = None, osc_out: str | None = None,
               osc_in: str | None = None) -> FastAPI:
    """The web app for the atlas at ``atlas_dir`` (opened read-only, never written).

    ``model``: the model the page shows first (default: the first fully embedded one).
    ``max_upload_bytes``: largest query upload (413 beyond). ``max_export_bytes``: largest zip
    export (413 beyond). ``allowed_hosts``: Host header names accepted (None: any); serving on a
    loopback address passes the loopback names, so a web page elsewhere cannot reach the API
    through DNS rebinding. ``osc_out`` ("HOST:PORT"): send the page's events as OSC there.
    ``osc_in`` ("[HOST:]PORT", host 127.0.0.1 unless given; port 0 picks a free one): listen for
    OSC there while the app runs (from its startup to its shutdown) and pass what arrives to the
    page (see ``soundatlas.web.osc``).
    """
    from soundatlas.web.routers import atlas as atlas_router
    from soundatlas.web import osc
    from soundatlas.web.routers import events, export, files, labels, models, samples, sound

    atlas_dir = Path(atlas_dir)
    if max_upload_bytes < 1:
        raise ParameterError(f"max_upload_bytes={max_upload_bytes} must be at least 1")
    if max_export_bytes < 1:
        raise ParameterError(f"max_export_bytes={max_export_bytes} must be at least 1")
    with Atlas.open(atlas_dir) as atlas:  # fail now, with the atlas's own message
        if model is not None:
            atlas.model(model)

    out = osc.OscOut(osc.parse_endpoint(osc_out, what="osc_out")) if osc_out else None
    hub = osc.EventHub()
    listener = None
    if osc_in is not None:
        listener = osc.OscIn(osc.parse_endpoint(osc_in, what="osc_in", default_host="127.0.0.1",
                                                allow_zero=True), hub)

    @asynccontextmanager
    async def lifespan(app):
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
                  description="The read-only API of a soundatlas atlas: the map's points as "
                  "binary arrays, samples, labels, neighbours, analogies, query by example, "
                  "paths rendered as sound and mosaics, audio with HTTP Range, export.")
    app.state.web = WebState(atlas_dir, model=model, max_upload_bytes=max_upload_bytes,
                             max_export_bytes=max_export_bytes, osc_out=out, osc_in=listener,
                             events=hub)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SoundAtlasError, _project_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(_SameOrigin)
    if allowed_hosts is not None:
        app.add_middleware(_HostCheck, allowed={h.lower().strip("[]") for h in allowed_hosts})

    for router in (atlas_router, samples, labels, models, sound, files, export, events):
        app.include_router(router.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs_page() -> HTMLResponse:
        # FastAPI's Swagger UI loads its script from a CDN; this page needs no network
        return HTMLResponse(_docs_html(app.openapi()))

    return app


def _docs_html(spec: dict) -> str:
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            params = ", ".join(
                f"{p['name']} ({p['in']}{'' if p.get('required') else ', optional'})"
                for p in op.get("parameters", [])
            )
            body = "body" if "requestBody" in op else ""
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code>"
                f"</td><td>{html.escape(op.get('summary', ''))}<br><small>"
                f"{html.escape(op.get('description', '') or '')}</small></td>"
                f"<td>{html.escape(', '.join(x for x in (params, body) if x))}</td></tr>"
            )
    title = html.escape(spec.get("info", {}).get("title", "API"))
    return (
        f"<!doctype html><meta charset=utf-8><title>{title} API</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em}td{vertical-align:top;"
        "padding:.3em .6em;border-bottom:1px solid #ddd}small{color:#555}</style>"
        f"<h1>{title} API</h1><p>{html.escape(spec.get('info', {}).get('description', ''))}</p>"
        "<p>Machine-readable: <a href=/openapi.json>/openapi.json</a> (OpenAPI "
        f"{html.escape(spec.get('openapi', ''))}). Every error is JSON "
        '<code>{"error": "message"}</code>.</p>'
        "<table><tr><th>method</th><th>path</th><th>what</th><th>parameters</th></tr>"
        + "".join(rows) + "</table>"
    )


class _HostCheck:
    """Refuse requests whose Host header is not one of ``allowed`` (JSON 400)."""

    def __init__(self, app, *, allowed: set[str]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            name = host[1:host.find("]")] if host.startswith("[") else host.split(":")[0]
            if name.lower() not in self.allowed:
                return await _refuse(scope, receive, send, 400, f"host {host!r} is not served "
                                     f"here; use one of: {', '.join(sorted(self.allowed))}")
        await self.app(scope, receive, send)


async def _refuse(scope, receive, send, status: int, message: str) -> None:
    """Answer from a middleware with the app's JSON error."""
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


class _SameOrigin:
    """Refuse (JSON 403) a request that changes or costs something (any method but GET, HEAD and
    OPTIONS) when a browser says it comes from another site: an ``Origin`` that is not this
    server's own, or ``Sec-Fetch-Site: cross-site``. A page elsewhere could otherwise make the
    server render, embed uploads or send OSC with a plain form or a no-cors fetch (it cannot
    read the answers, but the work is done). Clients that are not browsers send neither header
    and are not affected."""

    SAFE = {"GET", "HEAD", "OPTIONS"}

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] not in self.SAFE:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            host = headers.get("host", "").lower()
            own = f"{scope.get('scheme', 'http')}://{host}"
            # the host and port decide (a TLS proxy in front may change the scheme)
            if (origin is not None and urlsplit(origin.lower()).netloc != host) or \
                    headers.get("sec-fetch-site") == "cross-site":
                return await _refuse(scope, receive, send, 403, f"{scope['method']} from another "
                                     f"site ({origin or 'cross-site'}) is refused; use the page "
                                     f"served at {own}/")
        await self.app(scope, receive, send)


def end_streams(app) -> None:
    """End every open event stream of ``app`` (call when the server starts to stop: a stream
    never ends by itself, and the server waits for open responses before it stops)."""
    web = getattr(app.state, "web", None)
    if web is not None and web.events is not None:
        web.events.publish(None)


def is_loopback_host(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- one request in-process ----------------------------------------------------------------------


async def call(app, method: str, target: str, *, headers: Iterable[tuple[str, str]] = (),
               body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send one HTTP request to the ASGI ``app`` in this process; (status, headers, body).

    ``target`` is sent as a client would put it on the wire (path and query, percent-encoding
    and dot segments kept as given), so this also exercises paths an HTTP library would clean.
    """
    path, _, query = target.partition("?")
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if not any(k == b"host" for k, _ in raw_headers):
        raw_headers.insert(0, (b"host", b"127.0.0.1"))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": method.upper(), "scheme": "http", "path": unquote(path),
        "raw_path": path.encode("utf-8"), "query_string": query.encode("utf-8"), "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 80), "extensions": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status, out_headers, chunks = 500, {}, []

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays connected until the app is done

    async def send(message):
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers = {k.decode("latin-1"): v.decode("latin-1")
                           for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, out_headers, b"".join(chunks)


def describe_response(status: int, headers: dict[str, str], body: bytes) -> str:
    """What ``soundatlas serve --get`` prints: JSON pretty, text as is, binary in one line."""
    ctype = headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            return json.dumps(json.loads(body), indent=2)
        except ValueError:
            pass
    if ctype.startswith("text/"):
        return body.decode("utf-8", errors="replace")
    wanted = ("content-type", "content-range", "content-disposition")
    shown = {k: v for k, v in headers.items()
             if (k.startswith("x-") and k != "x-content-type-options") or k in wanted}
    listed = "; ".join(f"{k}: {v}" for k, v in sorted(shown.items()))
    return f"{status} {len(body)} bytes; {listed}"
