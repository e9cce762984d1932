"""``/api/samples``: the canonical id order, search, one sample's facts, CQT image and audio."""

from __future__ import annotations

import functools
import io

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from soundatlas.web.app import (
    all_labels,
    api_error,
    binary_response,
    file_response,
    sample_file,
    sample_or_404,
    web_state,
)

router = APIRouter(prefix="/api/samples", tags=["samples"])

MAX_PAGE = 10_000


@router.get("/ids", summary="Every sample id, ascending (binary int32 LE)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def get_ids(request: Request) -> Response:
    """The canonical order of samples: label codes (``/api/labels/{key}``) follow it.
    Header ``X-Count``: how many."""
    with web_state(request).atlas() as atlas:
        ids = np.array([sid for sid, _, _ in atlas.iter_ids_hashes()], dtype="<i4")
    return binary_response(ids.tobytes(), {"X-Count": len(ids)})


@router.get("", summary="Search samples by path and labels")
def search(
    request: Request,
    q: str = Query("", description="case-insensitive substring of the sample's path"),
    label: list[str] = Query([], description="KEY:VALUE, repeatable; all must hold"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="items on this page"),
    offset: int = Query(0, ge=0, description="items skipped before the page"),
) -> dict:
    """``total`` and ``ids``: every match (ascending id), so a page can highlight them all;
    ``items``: ``{id, path, labels}`` of the matches from ``offset``, at most ``limit``."""
    filters = []
    for f in label:
        key, sep, value = f.partition(":")
        if not sep or not key:
            raise api_error(400, f"label filter {f!r} must be KEY:VALUE")
        filters.append((key, value))
    with web_state(request).atlas() as atlas:
        labels = all_labels(atlas)
        unknown = [k for k, _ in filters if k not in labels]
        if unknown:
            raise api_error(400, f"no label {unknown[0]!r} in this atlas (known: "
                            f"{', '.join(labels) or 'none'})")
        needle = q.casefold()
        matches = [
            (sid, path) for sid, _, path in atlas.iter_ids_hashes()
            if needle in path.casefold()
            and all(labels[k].get(sid) == v for k, v in filters)
        ]
    page = matches[offset : offset + limit]
    items = [{"id": sid, "path": path,
              "labels": {k: by_id[sid] for k, by_id in labels.items() if sid in by_id}}
             for sid, path in page]
    return {"total": len(matches), "ids": [sid for sid, _ in matches], "items": items}


@router.get("/{sample_id}", summary="One sample: path, labels, durations, format")
def get_sample(sample_id: int, request: Request) -> dict:
    """``path`` is relative to the library; ``duration`` is the seconds analysed,
    ``file_duration`` the file's length (null when the file does not say)."""
    with web_state(request).atlas() as atlas:
        r = sample_or_404(atlas, sample_id)
        labels = atlas.sample_labels(sample_id)
    return {"id": r.id, "path": r.path, "labels": labels, "duration": r.duration,
            "file_duration": r.file_duration, "truncated": r.truncated, "orig_sr": r.orig_sr,
            "n_channels": r.n_channels, "n_frames": r.n_frames, "size": r.size}


@router.get("/{sample_id}/cqt.png", summary="A small image of the sample's log-CQT",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_cqt_png(sample_id: int, request: Request) -> Response:
    """Drawn from the stored features (no audio decoding): time to the right, frequency up."""
    with web_state(request).atlas() as atlas:
        F = atlas.features(sample_or_404(atlas, sample_id))
    return Response(cqt_png(F), media_type="image/png",
                    headers={"Cache-Control": "max-age=3600"})


@router.get("/{sample_id}/audio", summary="The sample's original file (HTTP Range)",
            response_class=Response, responses={200: {"content": {"audio/*": {}}},
                                                206: {"description": "the requested range"}})
def get_audio(sample_id: int, request: Request) -> Response:
    """Streamed from the library as it is on disk, with ``Accept-Ranges: bytes``: a Range
    request gets 206 and exactly those bytes, an unsatisfiable one 416."""
    with web_state(request).atlas() as atlas:
        record = sample_or_404(atlas, sample_id)
        root = atlas.library
    path, st = sample_file(root, record)
    return file_response(request, path, st=st)


def cqt_png(F: np.ndarray) -> bytes:
    """PNG of log-CQT frames ``F`` (frames x bins): bins bottom to top, magma colours."""
    from PIL import Image

    F = np.asarray(F, dtype=np.float32)
    top = float(F.max()) if F.size else 0.0
    v = np.clip(F / top, 0, 1) if top > 0 else np.zeros_like(F)
    img = _magma()[(v.T[::-1] * 255).astype(np.uint8)]  # bins x frames x RGB
    image = Image.fromarray(img)
    n_frames = max(1, F.shape[0])
    scale = min(8, max(1, 192 // n_frames))  # short notes widened so they stay visible
    if scale > 1:
        image = image.resize((n_frames * scale, image.height), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def _magma() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
