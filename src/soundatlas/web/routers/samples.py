"""``/api/samples``: the canonical id order, search, one sample's facts, CQT image and audio."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from soundatlas.atlas.curation import STAR_KEY, TAG_KEY
from soundatlas.colormaps import cqt_png
from soundatlas.errors import AudioReadError
from soundatlas.transcode import transcode_wav
from soundatlas.web.deps import PathId, check_count, parse_ids, sample_or_404, web_state
from soundatlas.web.responses import (
    api_error,
    binary_response,
    file_response,
    sample_file,
    temp_file_response,
)

router = APIRouter(prefix="/api/samples", tags=["samples"])

MAX_PAGE = 10_000
AUDIO_FORMATS = ("wav",)  # what ?format= may ask for: 16-bit PCM WAV


@router.get("/ids", summary="Every sample id, ascending (binary int32 LE)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def get_ids(request: Request) -> Response:
    """The canonical order of samples: label codes (``/api/labels/{key}``) follow it.
    Header ``X-Count``: how many."""
    with web_state(request).atlas() as atlas:
        ids = atlas.sample_ids().astype("<i4")
    return binary_response(ids.tobytes(), {"X-Count": len(ids)})


@router.get("", summary="Search samples by path and labels")
def search(
    request: Request,
    q: str = Query("", description="case-insensitive substring of the sample's path"),
    label: list[str] = Query([], description="KEY:VALUE, repeatable: the values of one key "
                             "are alternatives, and every key must hold (the user's tags are "
                             "labels: tag:WORD, each of which must hold; starred:yes; "
                             "KEY:VALUE)"),
    collection: str | None = Query(None, description="only the samples of this collection"),
    tempo: str | None = Query(None, description="MIN-MAX beats per minute (label tempo)"),
    key: str | None = Query(None, description="a key, e.g. 'A minor' (label key)"),
    relative: bool = Query(False, description="with key: its relative major or minor too"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="items on this page"),
    offset: int = Query(0, ge=0, description="items skipped before the page"),
) -> dict:
    """``total`` and ``ids``: every match (ascending id), so a page can highlight them all;
    ``items``: ``{id, path, labels}`` of the matches from ``offset``, at most ``limit``."""
    if "\x00" in q:  # SQLite's LIKE would stop at it and match every path
        raise api_error(400, "q holds a NUL character, which no path has")
    filters = label_filters(label)
    with web_state(request).atlas() as atlas, atlas.snapshot():
        known = atlas.label_keys()
        # the user's tags and stars are filters even when none is left: no 400 after the last
        unknown = [k for k, _ in filters if k not in known and k not in (TAG_KEY, STAR_KEY)]
        if unknown:
            raise api_error(400, f"no label {unknown[0]!r} in this atlas (known: "
                            f"{', '.join(known) or 'none'})")
        # the path test is SQL for ASCII paths and samples.fold for the others: see find_samples
        matches = atlas.find_samples(path_contains=q, labels=filters).tolist()
        if collection is not None:  # its sounds, each at every path the library holds it
            members = atlas.collection_samples(collection)
            matches = [m for m in matches if m in members]
        if tempo is not None:
            low, high = _tempo_range(tempo)
            bpm = atlas.labels("tempo")
            matches = [m for m in matches if m in bpm and low <= _number(bpm[m]) <= high]
        if key is not None:
            from soundatlas.rhythm import normalise_key

            keys = _keys(key, relative)
            found = atlas.labels("key")  # a manifest's own spelling too: 'Bb minor', 'Am'
            spelled = {v: normalise_key(v) for v in set(found.values())}
            matches = [m for m in matches if spelled.get(found.get(m)) in keys]
        items = sample_items(atlas, matches[offset : offset + limit])[0]
    return {"total": len(matches), "ids": matches, "items": items}


def _tempo_range(text: str) -> tuple[float, float]:
    """``MIN-MAX`` beats per minute; 400 naming what is wrong."""
    low, sep, high = text.partition("-")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise api_error(400, f"tempo {text!r} must be MIN-MAX beats per minute, e.g. 90-110") \
            from None
    if not sep or not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise api_error(400, f"tempo {text!r} must be MIN-MAX with MIN <= MAX")
    return lo, hi


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _keys(key: str, relative: bool) -> set[str]:
    """The keys a key filter accepts, as ``index`` spells them; 400 for a text that is not a
    key (``rhythm.normalise_key``: 'A minor', 'Bb major', 'F#m')."""
    from soundatlas.rhythm import NOTE_NAMES, normalise_key, relative_key

    canonical = normalise_key(key)
    if canonical is None:
        raise api_error(400, f"key {key!r} must be a note ({', '.join(NOTE_NAMES)}, or a flat "
                        "such as Bb) and major or minor, e.g. 'A minor'")
    return {canonical, relative_key(canonical)} if relative else {canonical}


def label_filters(label: list[str]) -> list[tuple[str, str]]:
    """Parse the search's label filters.

    Parameters
    ----------
    label : list of str
        ``KEY:VALUE`` filters (the value may be empty or hold colons).

    Returns
    -------
    list of (str, str)
        (key, value) pairs, in the given order.

    Raises
    ------
    fastapi.HTTPException
        400 naming the first filter that is not ``KEY:VALUE``.
    """
    filters = []
    for f in label:
        key, sep, value = f.partition(":")
        if not sep or not key:
            raise api_error(400, f"label filter {f!r} must be KEY:VALUE")
        filters.append((key, value))
    return filters


@router.get("/lookup", summary="Paths and labels of many samples (few ids)")
def lookup_get(
    request: Request,
    ids: str = Query(..., description="comma-separated sample ids, e.g. 1,2,3"),
) -> dict:
    """The GET twin of ``POST /api/samples/lookup`` for a few ids (a URL holds a few thousand
    characters at most; use POST for more): ``ids=1,2,3``. Same answer and errors."""
    return lookup(request, parse_ids(ids))





@router.post("/lookup", summary="Paths and labels of many samples at once")
def lookup_post(
    request: Request,
    body: Any = Body(..., description='{"ids": [sample id, ...]}, at most 10,000',
                     examples=[{"ids": [1, 2, 3]}]),
) -> dict:
    """Instead of one ``GET /api/samples/{id}`` per id. Body ``{"ids": [1, 2, 3]}``, at most
    10,000 ids. Answer ``{"items": [{id, path, labels}], "missing": [ids]}``: ``items`` in the
    order asked (a repeated id once), ``missing`` the ids the atlas does not hold. 400 when the
    body is not ``{"ids": [integers]}`` or holds more than 10,000 ids."""
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list):
        raise api_error(400, 'the body must be {"ids": [sample id, ...]}')
    check_count(len(ids))
    for i, x in enumerate(ids):
        if isinstance(x, bool) or not isinstance(x, int):
            raise api_error(400, f"ids[{i}]: {x!r} is not an integer sample id")
    return lookup(request, ids)


def lookup(request: Request, ids: list[int]) -> dict:
    """The answer of both lookup endpoints: ``{"items": [...], "missing": [...]}`` for the
    checked ``ids`` (see ``sample_items``; a repeated id once, at its first place)."""
    wanted = list(dict.fromkeys(ids))  # a repeated id once, at its first place
    with web_state(request).atlas() as atlas, atlas.snapshot():
        items, missing = sample_items(atlas, wanted)
    return {"items": items, "missing": missing}




def sample_items(atlas, ids: list[int]) -> tuple[list[dict], list[int]]:
    """Samples as the API lists them.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    ids : list of int
        Sample ids, in the order wanted.

    Returns
    -------
    items : list of dict
        ``{id, path, labels}`` of those of ``ids`` the atlas holds, in the given order.
    missing : list of int
        The ids it does not hold.
    """
    paths = atlas.paths(ids)
    labels = atlas.labels_of(paths)
    items = [{"id": i, "path": paths[i], "labels": labels.get(i, {})} for i in ids if i in paths]
    return items, [i for i in ids if i not in paths]


@router.get("/{sample_id}", summary="One sample: path, labels, durations, format")
def get_sample(sample_id: PathId, request: Request) -> dict:
    """``path`` is relative to the library; ``duration`` is the seconds analysed,
    ``file_duration`` the file's length (null when the file does not say)."""
    with web_state(request).atlas() as atlas:
        r = sample_or_404(atlas, sample_id)
        labels = atlas.sample_labels(sample_id)
    return {"id": r.id, "path": r.path, "labels": labels, "duration": r.duration,
            "file_duration": r.file_duration, "truncated": r.truncated, "orig_sr": r.orig_sr,
            "n_channels": r.n_channels, "n_frames": r.n_frames, "size": r.size}


@router.get("/{sample_id}/cqt.png", summary="A small image of the sample's log-CQT",
            response_class=Response,
            responses={200: {"content": {"image/png": {}}},
                       409: {"description": "the sample's feature file is damaged"}})
def get_cqt_png(sample_id: PathId, request: Request) -> Response:
    """Drawn from the stored features (no audio decoding): time to the right, frequency up. A
    damaged feature file is a 409 naming it and the repair."""
    with web_state(request).atlas() as atlas:
        F = atlas.features(sample_or_404(atlas, sample_id))
    return Response(cqt_png(F), media_type="image/png",
                    headers={"Cache-Control": "max-age=3600"})


@router.get("/{sample_id}/audio", summary="The sample's file (HTTP Range), or decoded to WAV",
            response_class=Response, responses={200: {"content": {"audio/*": {}}},
                                                206: {"description": "the requested range"}})
@router.head("/{sample_id}/audio", include_in_schema=False)  # GET's headers, no bytes
def get_audio(
    sample_id: PathId,
    request: Request,
    audio_format: str | None = Query(
        None, alias="format",
        description="wav: the file decoded to 16-bit PCM WAV (for formats a browser cannot "
                    "play: AIFF, W64, CAF, AU...); leave out for the original bytes"),
) -> Response:
    """Without ``format``: streamed from the library as it is on disk, with ``Accept-Ranges:
    bytes``: a Range request gets 206 and exactly those bytes, an unsatisfiable one 416.

    ``format=wav``: the file decoded (libsndfile) to 16-bit PCM WAV at its own sample rate and
    channel count, values beyond full scale clipped. It is written block by block to a temporary
    file (memory stays bounded however long the file), which is then served like an original,
    Range included, and removed. 400 naming the file and the reason when it cannot be decoded;
    400 for another ``format``. HEAD answers the same headers without the bytes."""
    if audio_format is not None and audio_format not in AUDIO_FORMATS:
        raise api_error(400, f"format={audio_format!r} is not one of: "
                        f"{', '.join(AUDIO_FORMATS)} (leave it out for the original file)")
    with web_state(request).atlas() as atlas:
        record = sample_or_404(atlas, sample_id)
        root = atlas.library
    path, st = sample_file(root, record)
    if audio_format is None:
        return file_response(request, path, st=st)
    try:
        return temp_file_response(
            request, lambda tmp: transcode_wav(path, tmp, name=record.path),
            prefix="soundatlas-audio-", suffix=".wav", media_type="audio/wav")
    except AudioReadError as exc:
        raise api_error(400, f"cannot decode sample {sample_id}'s file {record.path!r}: "
                        f"{exc.reason}", path=record.path, reason=exc.reason) from None
