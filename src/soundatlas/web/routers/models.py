"""``/api/models/{name}/...``: a map's points and trajectories (binary), neighbours, analogies,
and query by example (an uploaded file embedded with the model, never added to the atlas)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from soundatlas.errors import AtlasError
from soundatlas.web.app import (
    MAX_K,
    api_error,
    binary_response,
    model_dims,
    model_or_404,
    neighbour_items,
    point_or_404,
    require_embeddings,
    sample_or_404,
    web_state,
)

router = APIRouter(prefix="/api/models", tags=["models"])

_UPLOAD_SLACK = 64 * 1024  # multipart headers and boundaries around the file's bytes
K = Query(10, ge=1, le=MAX_K, description=f"how many neighbours (1 to {MAX_K})")


@router.get("/{name}/points", summary="Every embedded sample's point (binary)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}},
                       409: {"description": "the model has no embeddings yet"}})
def get_points(name: str, request: Request) -> Response:
    """Body: ``X-Count`` int32 ids (ascending) followed by ``X-Count`` x ``X-Dims`` float32
    points, all little-endian. Only samples embedded with the model appear."""
    web = web_state(request)
    with web.atlas() as atlas:
        model = model_or_404(atlas, name)
        require_embeddings(model)
        index = web.point_index(atlas, model)
    payload = index.ids.astype("<i4").tobytes() + index.points.astype("<f4").tobytes()
    return binary_response(payload, {"X-Count": len(index.ids), "X-Dims": index.dims})


@router.get("/{name}/trajectory/{sample_id}", summary="A sample's per-frame path (binary)",
            response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
def get_trajectory(name: str, sample_id: int, request: Request) -> Response:
    """Body: ``X-Frames`` x ``X-Dims`` float32 little-endian, one point per frame at
    ``X-Frame-Rate`` frames per second."""
    with web_state(request).atlas() as atlas:
        model = model_or_404(atlas, name)
        require_embeddings(model)
        sample_or_404(atlas, sample_id)
        try:
            traj = atlas.trajectory(model["id"], sample_id)
        except AtlasError:
            raise api_error(404, f"sample {sample_id} is not embedded with model {name!r} "
                            "yet") from None
        params = atlas.cqt_params
    rate = params.sr / params.hop_length
    return binary_response(traj.astype("<f4").tobytes(), {
        "X-Frames": traj.shape[0], "X-Dims": traj.shape[1] if traj.ndim == 2 else model_dims(model),
        "X-Frame-Rate": f"{rate:g}"})


@router.get("/{name}/neighbours/{sample_id}", summary="The k samples nearest a sample")
def get_neighbours(name: str, sample_id: int, request: Request, k: int = K) -> dict:
    """Nearest first by Euclidean distance between points on the map; never the sample itself.
    Each: ``{id, distance, path, labels}``."""
    web = web_state(request)
    with web.atlas() as atlas:
        model = model_or_404(atlas, name)
        require_embeddings(model)
        index = web.point_index(atlas, model)
        point = point_or_404(index, sample_id, model)
        items = neighbour_items(atlas, index.nearest(point, k, exclude=[sample_id]))
    return {"model": name, "id": sample_id, "neighbours": items}


class AnalogyRequest(BaseModel):
    a: int = Field(description="sample id: the sound to transform")
    b: int = Field(description="sample id: what to take away")
    c: int = Field(description="sample id: what to add")
    k: int = Field(10, ge=1, le=MAX_K, description=f"how many neighbours (1 to {MAX_K})")


@router.post("/{name}/analogy", summary="A - B + C and the samples nearest it")
def post_analogy(name: str, body: AnalogyRequest, request: Request) -> dict:
    """``point`` = point(a) - point(b) + point(c); ``neighbours``: the k samples nearest it,
    other than a, b and c."""
    web = web_state(request)
    with web.atlas() as atlas:
        model = model_or_404(atlas, name)
        require_embeddings(model)
        index = web.point_index(atlas, model)
        a, b, c = (point_or_404(index, sid, model) for sid in (body.a, body.b, body.c))
        point = a.astype(np.float64) - b + c
        items = neighbour_items(atlas, index.nearest(point, body.k,
                                                     exclude=[body.a, body.b, body.c]))
    return {"model": name, "point": [float(x) for x in point], "neighbours": items}


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}}}}}}}


@router.post("/{name}/query", summary="Query by example: embed an uploaded file",
             openapi_extra=_UPLOAD_BODY,
             responses={400: {"description": "not audio"}, 413: {"description": "too large"}})
async def post_query(name: str, request: Request, k: int = K) -> dict:
    """Upload one audio file as multipart field ``file``. It is decoded and turned into log-CQT
    frames exactly as indexing does, embedded with the model, and answered with its
    ``trajectory`` (one point per frame), its ``point`` and ``duration``, and the k nearest
    samples. It is not added to the atlas."""
    web = web_state(request)
    path, filename = await _receive_upload(request, web.max_upload_bytes)
    try:
        return await run_in_threadpool(_query, web, name, path, filename, k)
    finally:
        path.unlink(missing_ok=True)


class _TooLarge(Exception):
    pass


async def _receive_upload(request: Request, limit: int) -> tuple[Path, str]:
    """Stream the multipart body's ``file`` to a temporary file; 413 as soon as it passes
    ``limit`` bytes (the rest is never read)."""
    too_large = api_error(413, f"the upload is larger than the limit of {limit} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise api_error(400, "send the audio file as multipart/form-data in a field named 'file'")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _UPLOAD_SLACK:
        raise too_large

    async def limited():
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit + _UPLOAD_SLACK:
                raise _TooLarge
            yield chunk

    parser = MultiPartParser(request.headers, limited(), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except _TooLarge:
        raise too_large from None
    except MultiPartException as exc:
        raise api_error(400, f"bad multipart upload: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise api_error(400, "no file in the upload: send it in a multipart field named 'file'")
        if upload.size is not None and upload.size > limit:
            raise too_large
        filename = Path(upload.filename or "upload").name
        suffix = Path(filename).suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() else ""
        fd, tmp = tempfile.mkstemp(prefix="soundatlas-query-", suffix=suffix)
        with os.fdopen(fd, "wb") as out:
            await run_in_threadpool(shutil.copyfileobj, upload.file, out)
        return Path(tmp), filename
    finally:
        await form.close()


def _query(web, name: str, path: Path, filename: str, k: int) -> dict:
    from soundatlas.embed import embed_outside_file
    from soundatlas.errors import AudioReadError

    with web.atlas() as atlas:
        model = model_or_404(atlas, name)
        require_embeddings(model)
        artifact = web.artifact(atlas, model)
        params = atlas.cqt_params
        try:
            decoded, _F, traj, point = embed_outside_file(atlas, artifact, path)
        except AudioReadError as exc:
            raise api_error(400, f"{filename}: {exc.reason}") from None
        index = web.point_index(atlas, model)
        items = neighbour_items(atlas, index.nearest(point, k))
    return {"model": name, "file": filename, "duration": decoded.duration,
            "truncated": decoded.truncated, "frame_rate": params.sr / params.hop_length,
            "trajectory": traj.astype(float).tolist(), "point": [float(x) for x in point],
            "neighbours": items}
