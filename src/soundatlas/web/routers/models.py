"""``/api/models/{name}/...``: a map's points and trajectories (binary), neighbours, analogies,
and query by example (an uploaded file embedded with the model, never added to the atlas).

Neighbours and query by example search the model's similarity space (``soundatlas.similarity``:
the hidden layer's 256 units per sample beside its pitch profile) by default, its timbre block
alone (the hidden layer: the same instrument at any pitch) with ``space=timbre``, or the 3-D map
with ``space=map``; so do analogies (a - b + c of the vectors; their ``point`` is always the
map's, for drawing). The JSON says which (``"space"``). A model without similarity vectors (an
atlas embedded before they existed) answers from the map, with a ``"note"`` that says so and
names the command that adds them; ``space=similarity`` and ``space=timbre`` are then a 409.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from soundatlas.atlas import ModelRecord
from soundatlas.errors import DamagedDataError, NotEmbeddedError
from soundatlas.frames import sample_sounding_span, sounding_span
from soundatlas.similarity import describe, embed_command, has_pitch, is_current
from soundatlas.web.deps import (
    MAX_K,
    PathId,
    SampleId,
    embedded_model,
    neighbour_items,
    point_or_404,
    sample_or_404,
    web_state,
)
from soundatlas.web.responses import api_error, binary_response
from soundatlas.web.state import model_dims, pitch_axis
from soundatlas.web.uploads import UPLOAD_BODY, run_on_upload

router = APIRouter(prefix="/api/models", tags=["models"])

K = Query(10, ge=1, le=MAX_K, description=f"how many neighbours (1 to {MAX_K})")
SPACE = Query(None, description="where to search: similarity (the model's similarity vectors, "
              "sound and pitch; the default where it has them), timbre (their hidden-layer "
              "block alone: the same instrument at any pitch) or map (the 3-D points)")
Space = Literal["similarity", "timbre", "map"] | None
EXACT = Query(False, description="search every similarity vector: an exact answer where the "
              "model is large enough to be searched approximately by default (\"exact\" in "
              "the answer says which it got)")


def _search_space(web, atlas, model: ModelRecord, asked: str | None, *, build: bool = True,
                  default: str = "similarity"):
    """(space name, SimilarityIndex or None, note or None) for a search ``asked`` for (None:
    ``default``, or the map where the model has no similarity vectors); None with
    ``build=False`` when the similarity index would have to be built first."""
    if asked == "map":
        return "map", None, None
    wanted = asked or default
    sim = web.similarity_index(atlas, model, build=build, timbre=wanted == "timbre")
    if sim is None:
        return None
    if sim.index is not None:
        note = None
        if wanted == "similarity" and not has_pitch(sim.space):
            note = (f"model {model.name!r}'s similarity vectors are the hidden layer alone, "
                    "made before the pitch profile joined it; "
                    f"`{embed_command(atlas, model)}` adds it")
        elif wanted == "similarity" and not is_current(sim.space, atlas.cqt_params):
            note = (f"model {model.name!r}'s similarity vectors are of an older space "
                    f"({describe(sim.space)}); `{embed_command(atlas, model)}` brings them up "
                    "to date")
        return wanted, sim, note
    if asked is not None:
        raise api_error(409, sim.message)
    return "map", None, sim.message


def _space_fields(space: str, sim, note: str | None, exact: bool, query=None) -> dict:
    """``space`` (and its detail or the note why not the similarity space), and ``exact``:
    whether the answer is exact (asked for, or a ``query`` the index searches whole); when
    not, ``recall`` estimates the share of the true neighbours it holds (measured when the
    index was built)."""
    out = {"space": space}
    if sim is not None:
        out["space_detail"] = describe(sim.space)
        approximate = sim.index.approximate and not exact and not (
            query is not None and sim.index.searches_all(query))
        out["exact"] = not approximate
        if approximate:
            out["recall"] = round(sim.index.recall, 3)
            out["approximate"] = (f"FAISS inverted file: {sim.index.nprobe} of "
                                  f"{sim.index.nlist} cells searched")
    else:
        out["exact"] = True  # the map's KD-tree
    if note is not None:
        out["note"] = note
    return out


@router.get("/{name}/points", summary="Every embedded sample's point (binary)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}},
                       409: {"description": "the model has no embeddings yet"}})
def get_points(name: str, request: Request) -> Response:
    """Body: ``X-Count`` int32 ids (ascending) followed by ``X-Count`` x ``X-Dims`` float32
    points, all little-endian. Only samples embedded with the model appear. ``X-Pitch-Axis``,
    present when the model has one, is the coordinate that is a measured pitch (the page turns
    it up). The page's nearest
    sounds come next, so the model's similarity index starts building in the background
    (``WebState.prebuild_similarity``) unless it is built."""
    web = web_state(request)
    with web.atlas() as atlas:
        model = embedded_model(atlas, name)
        index = web.point_index(atlas, model)
        if web.similarity_index(atlas, model, build=False) is None:
            web.prebuild_similarity(model.name)
    headers = {"X-Count": len(index.ids), "X-Dims": index.dims}
    if (axis := pitch_axis(model)) is not None:
        headers["X-Pitch-Axis"] = axis
    return binary_response(index.payload, headers)


@router.get("/{name}/trajectory/{sample_id}", summary="A sample's per-frame path (binary)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}},
                       409: {"description": "the sample's embedding file is damaged"}})
def get_trajectory(name: str, sample_id: PathId, request: Request) -> Response:
    """Body: ``X-Frames`` x ``X-Dims`` float32 little-endian, one point per frame at
    ``X-Frame-Rate`` frames per second. ``X-Sounding-First`` and ``X-Sounding-Last`` are the
    first and last frame at least 5 % as loud as the sample's loudest (``frames.sounding_span``):
    the page draws that part, because the near-silence after a note has no pitch of its own and
    its height swings away from the note's; where the sample's features cannot be read (a
    damaged feature file), every frame. A damaged embedding file is a 409 naming it."""
    with web_state(request).atlas() as atlas:
        model = embedded_model(atlas, name)
        rec = sample_or_404(atlas, sample_id)
        try:
            traj = atlas.trajectory(model.id, sample_id)
        except NotEmbeddedError:  # a damaged embedding file goes on: a 409 naming it
            raise api_error(404, f"sample {sample_id} is not embedded with model {name!r} "
                            "yet") from None
        params = atlas.cqt_params
        try:
            first, last = sample_sounding_span(atlas, rec, len(traj))
        except DamagedDataError:  # the path is whole; the details name the damage (cqt.png)
            first, last = 0, max(len(traj) - 1, 0)
    rate = params.sr / params.hop_length
    return binary_response(traj.astype("<f4").tobytes(), {
        "X-Frames": traj.shape[0], "X-Dims": traj.shape[1] if traj.ndim == 2 else model_dims(model),
        "X-Frame-Rate": f"{rate:g}", "X-Sounding-First": first, "X-Sounding-Last": last})


@router.get("/{name}/neighbours/{sample_id}", summary="The k samples nearest a sample")
async def get_neighbours(name: str, sample_id: PathId, request: Request, k: int = K,
                         space: Space = SPACE, exact: bool = EXACT) -> dict:
    """Nearest first by Euclidean distance in the similarity space (default) or between points
    on the map (``space=map``); never the sample itself. Each: ``{id, distance, path, labels,
    copy}`` (``copy``: the same content as the sample, at another path);
    ``space`` says where the distances were measured, ``exact`` whether every vector was
    searched (large models search approximately unless asked ``exact=true``; then ``recall``
    estimates the share of the true neighbours found)."""
    web = web_state(request)
    # Searching an index already built takes a millisecond or two: it is answered on the event
    # loop, which spares handing the request to a worker thread and back (at a million samples
    # with 20 clients on two cores that hand-over was a third of the server's CPU for each
    # request, and the queue it made was the latency). Building an index, or a search of every
    # vector of more than INLINE_EXACT, runs on a worker thread, where it does not hold up the
    # other requests.
    answer = _neighbours(web, name, sample_id, k, space, exact, build=False)
    if answer is None:
        answer = await run_in_threadpool(_neighbours, web, name, sample_id, k, space, exact,
                                         build=True)
    return answer


#: an exact similarity index of up to this many vectors is searched on the event loop (a few
#: milliseconds at worst); a larger one on a worker thread (55 ms for 100,000 unclustered
#: vectors, which would hold up every other request)
INLINE_EXACT = 10_000


def _neighbours(web, name: str, sample_id: int, k: int, space: str | None, exact: bool, *,
                build: bool) -> dict | None:
    """``get_neighbours``'s answer; None with ``build=False`` when the answer needs an index
    built first, or a search of every vector of more than ``INLINE_EXACT``."""
    with web.atlas() as atlas:
        model = embedded_model(atlas, name)
        chosen = _search_space(web, atlas, model, space, build=build)
        if chosen is None:
            return None
        used, sim, note = chosen
        if sim is not None:
            if not build and not (sim.index.approximate or len(sim.index) <= INLINE_EXACT):
                return None  # an exact search of many vectors: tens of milliseconds
            vector = sim.index.vector(sample_id)
            if vector is None:
                raise api_error(404, f"sample {sample_id} has no similarity vector for model "
                                f"{name!r} (unknown id, or not embedded yet)")
            if sim.index.approximate:
                found = sim.index.nearest(vector, k, exclude=[sample_id], exact=exact,
                                          fall_back=build)
                if found is None:  # it would search every vector
                    return None
            else:
                found = sim.index.nearest(vector, k, exclude=[sample_id])
        else:
            index = web.point_index(atlas, model, build=build)
            if index is None or not (build or index.has_tree):
                return None  # the points or their tree to be built: on a worker thread
            point = point_or_404(index, sample_id, model)
            found = index.nearest(point, k, exclude=[sample_id])
        items = neighbour_items(atlas, found, same_as=atlas.hashes_of([sample_id])[sample_id])
    return {"model": name, "id": sample_id, **_space_fields(used, sim, note, exact),
            "neighbours": items}


class AnalogyRequest(BaseModel):
    a: SampleId = Field(description="sample id: the sound to transform")
    b: SampleId = Field(description="sample id: what to take away")
    c: SampleId = Field(description="sample id: what to add")
    k: int = Field(10, ge=1, le=MAX_K, description=f"how many neighbours (1 to {MAX_K})")
    space: Space = Field(
        None, description="where to search: similarity (the default where the model has "
        "similarity vectors), timbre (their hidden-layer block alone) or map")
    exact: bool = Field(False, description="search every similarity vector (large models are "
                        "searched approximately by default)")


@router.post("/{name}/analogy", summary="A - B + C and the samples nearest it")
def post_analogy(name: str, body: AnalogyRequest, request: Request) -> dict:
    """``point`` = point(a) - point(b) + point(c) on the map; ``neighbours``: the k samples
    nearest a - b + c, other than a, b and c, in the similarity space (default) or on the map
    (``space``), as ``space`` in the answer says."""
    web = web_state(request)
    with web.atlas() as atlas:
        model = embedded_model(atlas, name)
        index = web.point_index(atlas, model)
        a, b, c = (point_or_404(index, sid, model) for sid in (body.a, body.b, body.c))
        point = a.astype(np.float64) - b + c
        used, sim, note = _search_space(web, atlas, model, body.space)
        exclude = [body.a, body.b, body.c]
        if sim is not None:
            va, vb, vc = (sim.index.vector(sid) for sid in exclude)
            if va is None or vb is None or vc is None:
                raise api_error(404, f"a sample of {exclude} has no similarity vector for model "
                                f"{name!r}")
            query = va - vb + vc
            found = sim.index.nearest(query, body.k, exclude=exclude, exact=body.exact)
        else:
            query = None
            found = index.nearest(point, body.k, exclude=exclude)
        items = neighbour_items(atlas, found)
    return {"model": name, **_space_fields(used, sim, note, body.exact, query),
            "point": [float(x) for x in point], "neighbours": items}


@router.post("/{name}/query", summary="Query by example: embed an uploaded file",
             openapi_extra=UPLOAD_BODY,
             responses={400: {"description": "not audio"}, 413: {"description": "too large"}})
async def post_query(name: str, request: Request, k: int = K, space: Space = SPACE,
                     exact: bool = EXACT) -> dict:
    """Upload one audio file as multipart field ``file``. It is decoded and turned into log-CQT
    frames exactly as indexing does, embedded with the model, and answered with its
    ``trajectory`` (one point per frame; ``sounding``: its first and last frame at least 5 % as
    loud as its loudest, as for a sample's trajectory), its ``point`` and ``duration``, and the
    k nearest samples in the similarity space (its vector computed as the atlas's are) or on
    the map (``space=map``), as ``space`` says, each with ``copy``: whether it is the uploaded
    file itself (the same content), already in the library. It is not added to the atlas."""
    return await run_on_upload(request, _query, name, k, space, exact)


def _query(web, path: Path, filename: str, name: str, k: int, space: str | None,
           exact: bool) -> dict:
    from soundatlas.embed import embed_outside_file
    from soundatlas.errors import AudioReadError
    from soundatlas.frames import frame_energy
    from soundatlas.pipeline import content_hash

    with web.atlas() as atlas:
        model = embedded_model(atlas, name)
        used, sim, note = _search_space(web, atlas, model, space)
        artifact = web.artifact(atlas, model)
        params = atlas.cqt_params
        digest = content_hash(path)  # seeds the embedding's noise, and tells copies
        try:
            decoded, features, traj, point, codes = embed_outside_file(
                atlas, artifact, path, content_hash=digest, with_vector=True)
        except AudioReadError as exc:
            raise api_error(400, f"{filename}: {exc.reason}") from None
        if sim is not None:
            if codes is not None and not has_pitch(sim.space):
                # the hidden layer alone (space=timbre, or an atlas embedded before the pitch
                # profile): an upload's vector starts with it
                codes = codes[: sim.space["dims"]]
            if codes is None or codes.shape != (sim.index.dims,):
                raise api_error(409, f"the atlas's similarity vectors for model {name!r} are "
                                f"of another space ({sim.space['name']}) than an upload's: "
                                f"`{embed_command(atlas, model)}` brings them up to date; or "
                                "ask with space=map")
            query = codes.astype(np.float64) * sim.index.scale
            found = sim.index.nearest(query, k, exact=exact)
        else:
            query = None
            found = web.point_index(atlas, model).nearest(point, k)
        items = neighbour_items(atlas, found, same_as=digest)
    silent = not float(frame_energy(features, compression=params.compression).max()) > 0
    return {"model": name, "file": filename, "duration": decoded.duration,
            "truncated": decoded.truncated, "silent": silent,
            "frame_rate": params.sr / params.hop_length,
            "trajectory": traj.astype(float).tolist(),
            "sounding": list(sounding_span(features, compression=params.compression)),
            "point": [float(x) for x in point], **_space_fields(used, sim, note, exact, query),
            "neighbours": items}


class SuggestRequest(BaseModel):
    ids: list[SampleId] = Field(min_length=1, max_length=1000, description="sample ids (at most 1000)")
    label: str = Field(min_length=1, description="the label to suggest (a tag key counts)")
    k: int = Field(10, ge=1, le=100, description="labelled neighbours that vote")
    space: Space = Field(
        None, description="where nearness is measured: timbre, similarity or map (default: "
        "timbre where the model has similarity vectors, else the map)")


def _labelled_vectors(have: dict, vector_of) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors as float32 rows) of the samples with a value that have a vector in the
    space: filled into one array, not a Python array per sample (400,000 labelled samples
    are 140 MB of 88-value rows, not a list of 400,000 arrays and a float64 copy of it)."""
    ids = np.fromiter(have, np.int64, len(have))
    vectors = None
    kept = 0
    for i in ids.tolist():
        v = vector_of(i)
        if v is None:
            continue
        if vectors is None:
            vectors = np.empty((len(ids), len(v)), np.float32)
        vectors[kept] = v
        ids[kept] = i
        kept += 1
    if vectors is None:
        return ids[:0], np.empty((0, 0), np.float32)
    return ids[:kept], vectors[:kept]


def _nearest_values(labelled, vector, have: dict, k: int) -> tuple[list, float]:
    """The values of the ``k`` labelled samples nearest ``vector``, nearest first (as
    ``suggest.vote`` searches them: every labelled sample, exactly), measured 65,536 rows at a
    time, and the distance to the nearest of them."""
    ids, vectors = labelled
    if not len(ids):
        return [], float("inf")
    v = np.asarray(vector, np.float32)
    d = np.concatenate([np.square(vectors[i:i + 65536] - v).sum(axis=1)
                        for i in range(0, len(ids), 65536)])
    order = np.argsort(d, kind="stable")[:k]
    return [have[int(ids[j])] for j in order], float(np.sqrt(d[order[0]]))


@router.post("/{name}/suggest", summary="Suggest a label for samples from their neighbours")
def post_suggest(name: str, body: SuggestRequest, request: Request) -> dict:
    """For each of ``ids`` without ``label``: the value most of its ``k`` nearest samples that
    have ``label`` carry, and the share of them that do (``confidence``), as ``soundatlas
    suggest`` computes it (where the nearest 50 k hold fewer than k labelled samples, the k
    nearest of every labelled sample vote); ``far`` when its nearest labelled sample lies
    farther than 99 % of the labelled samples from their own nearest (``suggest.reach``): its
    sound is like none that voted. ``null`` for a sample that has the label already (or when
    no sample has it). Nothing is stored: accepting one is a tag (``POST /api/curation/tags``)."""
    from soundatlas.suggest import majority

    web = web_state(request)
    with web.atlas() as atlas:
        model = embedded_model(atlas, name)
        known = atlas.label_keys()
        if body.label not in known:
            raise api_error(404, f"no label {body.label!r} in this atlas (known: "
                            f"{', '.join(known)})")
        have = atlas.labels(body.label)
        used, sim, note = _search_space(web, atlas, model, body.space, default="timbre")
        index = None if sim is not None else web.point_index(atlas, model)
        vector_of = sim.index.vector if sim is not None else index.point
        labelled = None  # (ids, vectors) of the labelled samples, made when first needed
        reach = None  # how far the labelled samples reach (suggest.reach), asked when needed

        def labelled_rows() -> tuple[np.ndarray, np.ndarray]:
            nonlocal labelled
            labelled = labelled or _labelled_vectors(have, vector_of)
            return labelled

        out = []
        for sid in body.ids:
            if sid in have:
                out.append(None)
                continue
            if sim is not None:
                vector = sim.index.vector(sid)
                if vector is None:
                    raise api_error(404, f"sample {sid} has no similarity vector for model "
                                    f"{name!r}")
                near = sim.index.nearest(vector, 50 * body.k, exclude=[sid])
            else:
                vector = point_or_404(index, sid, model)
                near = index.nearest(vector, 50 * body.k, exclude=[sid])
            voters = [(have[i], d) for i, d in near if i in have][: body.k]
            values = [v for v, _ in voters]
            nearest = voters[0][1] if voters else float("inf")
            if len(values) < body.k:  # few labelled samples near: the k nearest of them all
                values, nearest = _nearest_values(labelled_rows(), vector, have, body.k)
            if not values:
                out.append(None)
                continue
            value, n = majority(values)
            if reach is None:
                reach = web.label_reach(atlas, model, used, body.label, have.keys(),
                                        lambda: labelled_rows()[1], version=None if sim is None
                                        else (sim.space or {}).get("updated"))
            out.append({"value": value, "confidence": n / body.k, "far": nearest > reach})
    return {"model": name, "label": body.label, "space": used, "k": body.k,
            "suggestions": [None if s is None else {"id": i, **s}
                            for i, s in zip(body.ids, out)]}
