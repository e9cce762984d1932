"""What the routers look up in the atlas and the app: the app's state, and models, samples and
points by name or id, each a 404 (or 409) with a message that says what exists when it is not
there. Shared by the routers; none of them holds a private copy."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Annotated

import numpy as np
from fastapi import Request
from pydantic import BeforeValidator, Strict

from soundatlas.atlas import Atlas, ModelRecord, SampleRecord
from soundatlas.atlas.core import writer_alive
from soundatlas.errors import AtlasError
from soundatlas.exports import sample_duration
from soundatlas.web.responses import api_error
from soundatlas.web.state import PointIndex, WebState, model_dims

__all__ = ["EMBED_HINT", "WRITING_HINT", "embed_hint", "MAX_K", "MAX_LOOKUP", "SampleId", "PathId",
           "check_count", "parse_ids", "web_state", "model_summary", "model_or_404",
           "require_embeddings", "embedded_model", "default_model", "sample_or_404",
           "point_or_404", "neighbour_items", "sorted_values", "sample_duration"]

EMBED_HINT = "run: soundatlas map LIBRARY (or soundatlas embed --atlas A --model M)"
#: the hint while a run writes the atlas (its points come as it goes)
WRITING_HINT = ("an index, embed or adapt is writing this atlas now; reload the page when it "
                "ends")
MAX_K = 200
MAX_LOOKUP = 10_000  # ids per lookup request
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")  # longer cannot be an id (nor parse fast)
#: A sample id in a JSON body: a JSON integer only. Lax validation took ``true`` as 1, ``"2"``
#: and ``2.0`` as 2: a wrong id that writes (a tag, a star) is a 422 instead.
SampleId = Annotated[int, Strict()]


def _digits_only(value):
    """A path's sample id as digits alone: lax parsing read ``1_0``, ``+10`` and `` 10`` as 10."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,18}", value):
        raise ValueError("a sample id is a whole number written in digits alone")
    return value


#: A sample id in a URL path (``/api/samples/{sample_id}``): digits alone, else a 422.
PathId = Annotated[int, BeforeValidator(_digits_only)]


def check_count(n: int) -> None:
    """A 400 when a request names more than ``MAX_LOOKUP`` ids."""
    if n > MAX_LOOKUP:
        raise api_error(400, f"{n} ids asked, at most {MAX_LOOKUP:,} per request: split them")


def parse_ids(ids: str) -> list[int]:
    """The ids of an ``ids=1,2,3`` query parameter; 400 naming the first that is not an
    integer, or when there are more than ``MAX_LOOKUP``."""
    parts = ids.split(",") if ids.strip() else []
    check_count(len(parts))
    bad = [p for p in parts if not _INTEGER.fullmatch(p.strip())]
    if bad:
        raise api_error(400, f"ids: {bad[0]!r} is not an integer sample id (want e.g. "
                        "ids=1,2,3)")
    return [int(p) for p in parts]


def web_state(request: Request) -> WebState:
    """The app's :class:`WebState` (a FastAPI dependency, or called with the request).

    Parameters
    ----------
    request : fastapi.Request
        The request being answered.

    Returns
    -------
    WebState
    """
    return request.app.state.web


def model_summary(model: ModelRecord) -> dict:
    """What ``/api/atlas`` says of a model's record: a dict of its name, neighbourhood,
    embedded count (``n_embedded``) and dims."""
    return {
        "name": model.name,
        "neighbourhood": model.config.get("neighbourhood", {}).get("name"),
        "n_embedded": model.n_embedded,
        "dims": model_dims(model),
    }


def model_or_404(atlas: Atlas, name: str) -> ModelRecord:
    """The model registered as ``name``.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    name : str
        The model's name.

    Returns
    -------
    ModelRecord

    Raises
    ------
    fastapi.HTTPException
        404 naming the models the atlas knows.
    """
    try:
        return atlas.model(name)
    except AtlasError:
        known = ", ".join(m.name for m in atlas.models()) or "none"
        raise api_error(404, f"no model {name!r} in this atlas (known: {known})") from None


def embed_hint(atlas: Atlas) -> str:
    """What to do about an atlas without points: wait, while an ``index``, ``embed`` or
    ``adapt`` writes it now (``embed --again`` drops a model's points before it makes them
    anew); else the command that makes them (:data:`EMBED_HINT`)."""
    if writer_alive(atlas.path):
        return WRITING_HINT
    return EMBED_HINT


def require_embeddings(model: ModelRecord, atlas: Atlas | None = None) -> None:
    """Refuse a model that has no embeddings yet.

    Parameters
    ----------
    model : ModelRecord
        The model's record.
    atlas : Atlas, optional
        Its atlas: the message says when a run is writing it now.

    Raises
    ------
    fastapi.HTTPException
        409 naming the command that makes them, or that a run is writing the atlas now.
    """
    if model.n_embedded == 0:
        hint = embed_hint(atlas) if atlas is not None else EMBED_HINT
        if hint == WRITING_HINT:
            raise api_error(409, f"model {model.name!r} has no points yet: {hint}", hint=hint)
        command = f"soundatlas embed --atlas A --model {model.name}"
        raise api_error(409, f"model {model.name!r} has no embeddings yet; run: {command}",
                        hint=EMBED_HINT)


def embedded_model(atlas: Atlas, name: str) -> ModelRecord:
    """The record of the model ``name``, which must have embeddings (``model_or_404``,
    then ``require_embeddings``): else a 404 for an unknown model, a 409 for one without
    embeddings."""
    model = model_or_404(atlas, name)
    require_embeddings(model, atlas)
    return model


def default_model(atlas: Atlas, given: str | None) -> str | None:
    """The model the page shows first.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    given : str or None
        The model the server was started with.

    Returns
    -------
    str or None
        ``given``, else the first model that embedded every sample, else None.
    """
    if given:
        return given
    n = atlas.n_samples()
    for m in atlas.models():
        if n > 0 and m.n_embedded >= n:
            return m.name
    return None


def sample_or_404(atlas: Atlas, sample_id: int) -> SampleRecord:
    """The sample with id ``sample_id``.

    Raises
    ------
    fastapi.HTTPException
        404 when the atlas holds no such sample.
    """
    found = atlas.samples([sample_id])
    if not found:
        raise api_error(404, f"no sample with id {sample_id} in this atlas")
    return found[0]


def point_or_404(index: PointIndex, sample_id: int, model: ModelRecord) -> np.ndarray:
    """The point of ``sample_id`` in the model's ``index``.

    Raises
    ------
    fastapi.HTTPException
        404 when the sample has no point (unknown id, or not embedded yet).
    """
    point = index.point(sample_id)
    if point is None:
        raise api_error(404, f"sample {sample_id} has no point for model {model.name!r} "
                        "(unknown id, or not embedded yet)")
    return point


def neighbour_items(atlas: Atlas, pairs: list[tuple[int, float]], *,
                    same_as: str | None = None) -> list[dict]:
    """Search results as the API lists them.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    pairs : list of (int, float)
        (sample id, distance) pairs.
    same_as : str, optional
        The content hash of the sound asked about: each item then says whether it is a copy
        of it (``copy``: the same file at another path, or an upload that the library holds).

    Returns
    -------
    list of dict
        ``{id, distance, path, labels}`` (and ``copy`` with ``same_as``) in the given order
        (ids the atlas no longer holds left out).
    """
    paths = atlas.paths([sid for sid, _ in pairs])
    labels = atlas.labels_of(paths)  # one query for all, not one per sample
    items = [{"id": sid, "distance": d, "path": paths[sid], "labels": labels.get(sid, {})}
             for sid, d in pairs if sid in paths]
    if same_as is not None:
        hashes = atlas.hashes_of([item["id"] for item in items])
        for item in items:
            item["copy"] = hashes[item["id"]] == same_as
    return items


def sorted_values(values: Iterable[str]) -> list[str]:
    """Distinct label values, in numeric order when every one is a finite number.

    Parameters
    ----------
    values : iterable of str
        Label values, repeats allowed.

    Returns
    -------
    list of str
        Each value once: by number when all parse as finite numbers, else alphabetically.
    """
    values = sorted(set(values))
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return values
    if not all(math.isfinite(x) for x in numbers):
        return values
    return [v for _, v in sorted(zip(numbers, values))]
