"""``/api/models/{name}/synth`` and ``/mosaic``: the map as an instrument. A path drawn on the map
is rendered by concatenative synthesis, and an uploaded sound is rebuilt from the library's
grains (exactly as ``soundatlas synth`` and ``soundatlas mosaic`` do); both answer a WAV file.
Nothing is written to the atlas.

Renders are bounded: a path lasts at most ``MAX_SECONDS``, one render runs at a time and a few
wait (``WebState.renders``; beyond them 503 with Retry-After), and a render whose client has
disconnected stops at its next grain. ``GET /api/renders`` counts them."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from functools import partial
from typing import Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from soundatlas.errors import AudioReadError, ParameterError, SoundAtlasError
from soundatlas.web.deps import SampleId, embedded_model, web_state
from soundatlas.web.responses import api_error, attachment_header
from soundatlas.web.state import model_dims
from soundatlas.web.uploads import UPLOAD_BODY, run_on_upload

router = APIRouter(prefix="/api", tags=["sound"])

MAX_POINTS = 10_000
MAX_LISTED = 500  # sample ids listed in X-Render (a header must stay small)
MAX_SECONDS = 300.0  # the longest render the page may ask for (the CLI allows 600 s)
RETRY_AFTER = 5  # seconds a client refused for a full render queue is told to wait
_POLL = 0.05  # seconds between two looks at whether a render's client is still there
_WAV = {200: {"content": {"audio/wav": {}}}}


class SynthRequest(BaseModel):
    points: list[list[float]] | None = Field(
        None, description="the path's points in the model's coordinates (or give ids)")
    ids: list[SampleId] | None = Field(
        None, description="sample ids whose points make the path (instead of points)")
    durations: list[float] | None = Field(
        None, description="seconds each point lasts (one per point)")
    duration: float = Field(0.5, gt=0, description="seconds every point lasts, when no durations")
    glide: bool = Field(True, description="move in a straight line to the next point (else hold)")
    grain: float = Field(0.5, description="grain length in seconds (0.01 to 10)")
    overlap: float = Field(0.5, description="fraction of a grain shared with the next (0 to 0.95)")
    hold: Literal["advance", "repeat"] = Field(
        "advance", description="where the path stays on one frame: play on through that sound "
        "(advance) or re-read the frame's grain (repeat, the reference)")
    exclude: list[SampleId] = Field([], description="sample ids never used")
    format: Literal["pcm16", "float"] = Field("pcm16", description="WAV sample format")


@router.post("/models/{name}/synth", summary="Render a path through the map as audio (WAV)",
             response_class=Response, responses=_WAV)
async def post_synth(name: str, body: SynthRequest, request: Request) -> Response:
    """Each point of the path (``points`` in the model's coordinates, or the points of the
    samples ``ids``) lasts its duration; grains of the original files at the nearest sounding
    frame of the whole library are overlap-added with a Hann window, loudness-matched and
    limited. Answers the WAV; headers ``X-Duration``, ``X-Sample-Rate``, ``X-Grains``,
    ``X-Samples-Used`` and ``X-Render`` (the whole summary as JSON, with ``sample_ids``: the
    samples heard, in order of first use, at most 500). A wrong request is answered at once,
    never queued; 503 with Retry-After when the render queue is full."""
    web = web_state(request)
    path, exclude = await run_in_threadpool(_synth_path, web, name, body)
    return await run_render(request, _synth, web, name, body, path, exclude)


def _synth_path(web, name: str, body: SynthRequest):
    """The request's path (``synth.MapPath``) and the ids it excludes, checked: every wrong
    parameter, model or sample is a 4xx before the render queue."""
    from soundatlas import synth

    if (body.points is None) == (body.ids is None):
        raise api_error(400, "give the path as either 'points' or 'ids' (exactly one)")
    n = len(body.points if body.points is not None else body.ids)
    if not 1 <= n <= MAX_POINTS:
        raise api_error(400, f"a path has 1 to {MAX_POINTS} points, not {n}")
    durations = body.durations if body.durations is not None else [body.duration] * n
    if len(durations) != n:
        raise api_error(400, f"{len(durations)} durations for {n} points")
    total = float(np.sum(durations))
    if not total <= MAX_SECONDS:
        raise api_error(400, f"the path lasts {total:.1f} s; the page may render at most "
                        f"{MAX_SECONDS:.0f} s (use soundatlas synth for longer)")
    with web.atlas() as atlas:
        model = embedded_model(atlas, name)
        if body.ids is not None:
            index = web.point_index(atlas, model)
            rows = np.searchsorted(index.ids, body.ids)
            rows = np.minimum(rows, max(len(index.ids) - 1, 0))
            bad = [sid for sid, r in zip(body.ids, rows) if index.ids[r] != sid]
            if bad:
                raise api_error(404, f"sample {bad[0]} has no point for model {name!r}")
            points = index.points[rows].astype(np.float64)
        else:
            dims = model_dims(model)
            if any(len(p) != dims for p in body.points):
                raise api_error(400, f"each point needs {dims} coordinates for model {name!r}")
            points = np.asarray(body.points, dtype=np.float64)
        try:
            synth.check_grain(body.grain, body.overlap)
            path = synth.MapPath(points, np.asarray(durations, dtype=np.float64), glide=body.glide)
        except SoundAtlasError as exc:
            raise _render_error(exc) from None
        return path, _known(atlas, body.exclude)


def _synth(web, name: str, body: SynthRequest, path, exclude: set[int]) -> Response:
    from soundatlas import synth

    with web.atlas() as atlas:
        model = embedded_model(atlas, name)  # it may have gone while the render waited
        try:
            frames = web.frame_index(atlas, model)
            sr = frames.without(exclude).most_common_sr() if len(frames) else 44100
            result = synth.render(atlas, model, path, sr=sr, grain=body.grain,
                                  overlap=body.overlap, hold=body.hold, exclude=exclude,
                                  index=frames,
                                  cache=web.audio_cache(atlas.library, sr))
        except SoundAtlasError as exc:
            raise _render_error(exc) from None
    return _wav_response(result, body.format, f"path-{name}.wav")


async def run_render(request: Request, work, web, *args) -> Response:
    """Run ``work(web, *args)`` in a worker thread in the render slot (``web.renders``), and
    stop it once the client has disconnected: a task looks every ``_POLL`` s meanwhile."""
    done = threading.Event()
    gone = threading.Event()

    async def watch():
        while not done.is_set():
            if await request.is_disconnected():
                gone.set()
                return
            await asyncio.sleep(_POLL)

    def in_slot():
        from soundatlas.synth import RenderCancelled

        try:
            with web.renders.slot(gone.is_set):
                return work(web, *args)
        except RenderCancelled as exc:
            raise api_error(499, str(exc)) from None  # nobody reads it: the client has gone
        except web.renders.Busy:
            raise api_error(503, "the server is busy rendering: "
                            f"{web.renders.max_waiting + 1} renders are queued or running; "
                            f"try again in {RETRY_AFTER} s",
                            headers={"Retry-After": str(RETRY_AFTER)}) from None

    watcher = asyncio.create_task(watch())
    try:
        return await run_in_threadpool(in_slot)
    finally:
        done.set()
        watcher.cancel()


@router.get("/renders", summary="Renders running, queued, done, cancelled and refused")
def get_renders(request: Request) -> dict:
    """``running`` and ``waiting`` now; ``completed``, ``cancelled`` (the client went away),
    ``refused`` (the queue was full) and ``failed`` since the server started; ``max_running``
    and ``max_waiting`` (``serve --render-queue``)."""
    return web_state(request).renders.status()


def _render_error(exc: SoundAtlasError, upload: str | None = None):
    """What a failed render answers: 400 for a wrong parameter (or an upload that is not
    audio), 409 for the library's state (nothing left to render with, no readable file). A
    cancelled render (``RenderCancelled``) is raised again, for the render slot to count."""
    from soundatlas.synth import RenderCancelled

    if isinstance(exc, RenderCancelled):
        return exc
    if upload is not None and isinstance(exc, AudioReadError):
        return api_error(400, f"{upload}: {exc.reason}")
    return api_error(400 if isinstance(exc, ParameterError) else 409, str(exc))


@router.post("/models/{name}/mosaic", summary="Rebuild an uploaded sound from the library (WAV)",
             openapi_extra=UPLOAD_BODY, response_class=Response,
             responses={**_WAV, 400: {"description": "not audio"},
                        413: {"description": "too large"}})
async def post_mosaic(
    name: str, request: Request,
    exclude_self: bool = Query(True, description="never use a sample with the upload's content"),
    grain: float = Query(0.5, description="grain length in seconds (0.01 to 10)"),
    overlap: float = Query(0.5, description="fraction of a grain shared with the next"),
    hold: Literal["advance", "repeat"] = Query(
        "advance", description="where the upload's path stays on one frame: play on through "
        "that sound (advance) or re-read the frame's grain (repeat, the reference)"),
    format: Literal["pcm16", "float"] = Query("pcm16", description="WAV sample format"),
) -> Response:
    """Upload one audio file as multipart field ``file``. It is embedded with the model as a
    query is, and its trajectory followed with grains of the library, each scaled to the
    upload's own loudness at that time. Answers the WAV (headers as for ``synth``). The upload
    is not kept. A wrong request is answered at once, never queued; 503 with Retry-After when
    the render queue is full."""
    return await run_on_upload(request, _mosaic, name, exclude_self, grain, overlap, hold,
                               format, runner=partial(_checked_render, request))


async def _checked_render(request: Request, work, web, path, filename, name, *args) -> Response:
    """``run_render`` for a mosaic, once its model, its grain and the upload's being audio are
    known to be right (a 4xx before the render queue, not after it)."""
    await run_in_threadpool(_check_mosaic, web, path, filename, name, *args)
    return await run_render(request, work, web, path, filename, name, *args)


def _check_mosaic(web, path, filename, name, exclude_self, grain, overlap, hold, fmt) -> None:
    from soundatlas import synth
    from soundatlas.audio import open_sound

    try:
        synth.check_grain(grain, overlap)
    except SoundAtlasError as exc:
        raise _render_error(exc) from None
    with web.atlas() as atlas:
        web.artifact(atlas, embedded_model(atlas, name))  # 409 when its CQT differs
    try:
        open_sound(path).close()  # its header: a file that is not audio is not queued
    except AudioReadError as exc:
        raise _render_error(exc, upload=filename) from None


def _mosaic(web, path, filename, name, exclude_self, grain, overlap, hold, fmt) -> Response:
    from soundatlas import synth

    with web.atlas() as atlas:
        model = embedded_model(atlas, name)
        web.artifact(atlas, model)  # 409 when its CQT differs from the atlas's
        try:
            frames = web.frame_index(atlas, model)
            sr = frames.most_common_sr()
            result, facts = synth.mosaic(atlas, name, path, exclude_self=exclude_self,
                                         grain=grain, overlap=overlap, hold=hold, sr=sr,
                                         index=frames,
                                         cache=web.audio_cache(atlas.library, sr))
        except SoundAtlasError as exc:
            raise _render_error(exc, upload=filename) from None
    stem = filename.rsplit(".", 1)[0][:60] or "upload"
    return _wav_response(result, fmt, f"mosaic-{stem}.wav",
                         {"X-Self-Excluded": facts["n_self_excluded"]})


def _known(atlas, ids: list[int]) -> set[int]:
    """The ids to exclude, each one a sample of the atlas (400 naming one that is not)."""
    if not ids:
        return set()
    found = {r.id for r in atlas.samples(ids)}
    missing = sorted(set(ids) - found)
    if missing:
        raise api_error(400, f"exclude: no sample with id {missing[0]} in this atlas")
    return found


def _wav_response(result, fmt: str, filename: str, extra: dict | None = None) -> Response:
    from soundatlas.synth import wav_bytes

    summary = result.summary()
    summary["failures"] = summary["failures"][:10]
    used = list(dict.fromkeys(sid for sid, _ in result.grains))  # in order of first use
    summary["sample_ids"] = used[:MAX_LISTED]
    summary = {k: None if isinstance(v, float) and not math.isfinite(v) else v
               for k, v in summary.items()}  # JSON has no NaN: the page could not parse it
    headers = {
        "Content-Disposition": attachment_header(filename),
        "X-Duration": f"{result.duration:.6f}", "X-Sample-Rate": str(result.sr),
        "X-Grains": str(len(result.grains)), "X-Samples-Used": str(result.n_samples_used),
        "X-Render": json.dumps(summary, ensure_ascii=True, separators=(",", ":"),
                               allow_nan=False),
        **{k: str(v) for k, v in (extra or {}).items()},
    }
    return Response(wav_bytes(result.y, result.sr, fmt=fmt), media_type="audio/wav",
                    headers=headers)
