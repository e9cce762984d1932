"""``/api/curation`` and ``/api/collections``: the user's tags, stars, notes and collections
(``soundatlas.atlas.curation``), the one thing the server writes.

Writes are refused (403) when the server was started with ``--read-only`` or cannot write the
atlas, and, like every request that does work, when a browser says they come from another site
(``security.SameOrigin``). Every body is validated: a bad one is a 422 (its shape) or a 400 (a
tag, a name, an id), and nothing is written then. Tags are labels, so after a write the page
reads them back through ``/api/labels/{key}`` and the samples' ``labels``.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from soundatlas.web.deps import PathId, SampleId, parse_ids, web_state
from soundatlas.web.responses import api_error

router = APIRouter(tags=["curation"])

MAX_IDS = 100_000  # samples per write
MAX_TAGS = 100  # tags added or removed per write

Ids = Field(min_length=1, max_length=MAX_IDS, description="sample ids")


class TagRequest(BaseModel):
    ids: list[SampleId] = Ids
    add: list[str] = Field([], max_length=MAX_TAGS,
                           description="tags to add: a word, or KEY:VALUE (one per key)")
    remove: list[str] = Field([], max_length=MAX_TAGS,
                              description="tags to remove (KEY:* any value of KEY, * every "
                              "plain tag)")


class StarRequest(BaseModel):
    ids: list[SampleId] = Ids
    starred: bool = Field(True, description="false: unstar")


class NoteRequest(BaseModel):
    note: str | None = Field(None, max_length=10_000, description="the note (null: none)")


class NameRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="the collection's name")


class IdsRequest(BaseModel):
    ids: list[SampleId] = Ids


def _items(atlas, ids: list[int]) -> list[dict]:
    cur = atlas.curation_of(ids)
    empty = {"starred": False, "tags": [], "suggested": {}, "note": None, "collections": []}
    return [{"id": i, **cur.get(i, empty)} for i in dict.fromkeys(ids)]


@router.get("/api/curation", summary="What the user made: tags, stars, collections")
def get_curation(request: Request) -> dict:
    """``writable`` (and ``read_only``: why not), every plain and KEY:VALUE tag the user
    gave with its number of samples, the number starred, the collections, and how many
    items are kept for files no longer in the library (``missing``)."""
    web = web_state(request)
    with web.atlas() as atlas, atlas.snapshot():
        tags, n_starred = atlas.tag_counts()
        out = {"writable": web.read_only is None, "tags": tags,
               "starred": n_starred, "collections": atlas.collections(),
               "missing": len(atlas.missing_items())}
    if web.read_only is not None:
        out["read_only"] = web.read_only
    return out


@router.get("/api/curation/items", summary="The curation of some samples")
def get_items(request: Request, ids: str = Query(..., description="comma-separated ids")
              ) -> dict:
    """``{items: [{id, starred, tags, suggested, note, collections}]}`` in the order asked;
    ids the atlas does not hold are a 404."""
    wanted = parse_ids(ids)
    with web_state(request).atlas() as atlas, atlas.snapshot():
        atlas.hashes_of(wanted)  # a 404 naming the ids it does not hold
        return {"items": _items(atlas, wanted)}


@router.get("/api/curation/missing", summary="What is kept for files no longer there")
def get_missing(request: Request) -> dict:
    """``{items: [{hash, path (last seen), tags, starred, note, collections}]}``."""
    with web_state(request).atlas() as atlas:
        return {"items": atlas.missing_items()}


@router.post("/api/curation/tags", summary="Add and remove tags on samples")
def post_tags(body: TagRequest, request: Request) -> dict:
    """Removals first, then additions, in one transaction. Answer ``changed`` (how many
    (sample, tag) pairs changed), the samples' curation (``items``) and ``copies``: how many
    other samples hold one of their sounds, and so carry the same tags (they are kept by
    content)."""
    if not body.add and not body.remove:  # as the command line refuses it
        raise api_error(400, "nothing to do: give tags to 'add' or to 'remove'")
    with web_state(request).curation() as atlas:
        changed = atlas.tag(body.ids, add=body.add, remove=body.remove)
        return {"changed": changed, "items": _items(atlas, body.ids),
                "copies": atlas.copies_elsewhere(body.ids)}


@router.post("/api/curation/star", summary="Star or unstar samples")
def post_star(body: StarRequest, request: Request) -> dict:
    """Answer ``changed``, the samples' curation (``items``) and ``copies``, as tags do."""
    with web_state(request).curation() as atlas:
        changed = atlas.star(body.ids, starred=body.starred)
        return {"changed": changed, "items": _items(atlas, body.ids),
                "copies": atlas.copies_elsewhere(body.ids)}


@router.put("/api/curation/notes/{sample_id}", summary="Set a sample's note")
def put_note(sample_id: PathId, body: NoteRequest, request: Request) -> dict:
    """``{"note": "..."}`` (null or empty: none). Answer the sample's curation."""
    with web_state(request).curation() as atlas:
        atlas.set_note(sample_id, body.note)
        return _items(atlas, [sample_id])[0]


@router.get("/api/collections", summary="Every collection")
def get_collections(request: Request) -> dict:
    """``{collections: [{name, n, n_missing, created}]}``, by name."""
    with web_state(request).atlas() as atlas:
        return {"collections": atlas.collections()}


@router.post("/api/collections", summary="Make a collection", status_code=201)
def post_collection(body: NameRequest, request: Request) -> dict:
    """A new empty collection; 400 when the name is taken."""
    with web_state(request).curation() as atlas:
        atlas.create_collection(body.name)
        return {"name": body.name, "items": []}


@router.get("/api/collections/{name:path}", summary="A collection's samples in order")
def get_collection(name: str, request: Request) -> dict:
    """``items``: ``{id, path}`` in order; ``id`` is null for a file no longer in the
    library (``path``: where it was last seen)."""
    with web_state(request).atlas() as atlas:
        members = atlas.collection_members(name)
    return {"name": name, "items": [{"id": sid, "path": path} for sid, path in members]}


@router.patch("/api/collections/{name:path}", summary="Rename a collection")
def patch_collection(name: str, body: NameRequest, request: Request) -> dict:
    """``{"name": NEW}``."""
    with web_state(request).curation() as atlas:
        atlas.rename_collection(name, body.name)
    return {"name": body.name, "was": name}


@router.delete("/api/collections/{name:path}", summary="Delete a collection (its samples stay)")
def delete_collection(name: str, request: Request) -> dict:
    """Answer ``deleted``: the name."""
    with web_state(request).curation() as atlas:
        atlas.delete_collection(name)
    return {"deleted": name}


@router.post("/api/collections/{name:path}/add", summary="Append samples to a collection")
def post_collection_add(name: str, body: IdsRequest, request: Request,
                        create: bool = Query(False, description="make it when absent")
                        ) -> dict:
    """Samples in it already keep their place. Answer ``added``."""
    with web_state(request).curation() as atlas:
        return {"name": name, "added": atlas.add_to_collection(name, body.ids, create=create)}


@router.post("/api/collections/{name:path}/remove", summary="Take samples out of a collection")
def post_collection_remove(name: str, body: IdsRequest, request: Request) -> dict:
    """Answer ``removed``."""
    with web_state(request).curation() as atlas:
        return {"name": name, "removed": atlas.remove_from_collection(name, body.ids)}
