"""``POST /api/export``: a selection of samples as an M3U playlist, a CSV, or a zip of the files
(the formats of ``soundatlas.exports``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from soundatlas.exports import csv_text, m3u_text, stem_for, write_zip
from soundatlas.web.deps import SampleId, web_state
from soundatlas.web.responses import api_error, sample_file, temp_file_response

router = APIRouter(prefix="/api", tags=["export"])


class ExportRequest(BaseModel):
    ids: list[SampleId] = Field(description="sample ids, in the order wanted")
    format: Literal["m3u", "csv", "zip"] = Field(description="m3u | csv | zip")


@router.post("/export", summary="Export samples as M3U, CSV or zip",
             response_class=Response,
             responses={200: {"content": {"audio/x-mpegurl": {}, "text/csv": {},
                                          "application/zip": {}}},
                        413: {"description": "the zip would exceed the size limit"}})
def post_export(body: ExportRequest, request: Request) -> Response:
    """``m3u``: ``#EXTM3U``, then per sample ``#EXTINF:seconds,name`` and its absolute path.
    ``csv``: id, path, duration and one column per label key. ``zip``: the files, stored under
    their paths relative to the library, made to extract on any system
    (``exports.portable_names``). Sent as an attachment."""
    web = web_state(request)
    ids = list(dict.fromkeys(body.ids))  # duplicates once, first place kept
    if not ids:
        raise api_error(400, "no ids to export: the list is empty")
    with web.atlas() as atlas:
        found = {r.id: r for r in atlas.samples(ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise api_error(404, f"no samples with ids {shown} in this atlas",
                            missing=missing[:1000])
        records = [found[i] for i in ids]
        root = atlas.library
        # the CSV's columns: every label key of the atlas; its cells: only these samples' labels
        keys = sorted(atlas.label_keys()) if body.format == "csv" else []
        labels = atlas.labels_of(ids) if body.format == "csv" else {}
    stem = stem_for(len(records))
    if body.format == "m3u":
        return _attachment(m3u_text(records, root).encode("utf-8"),
                           "audio/x-mpegurl; charset=utf-8", f"{stem}.m3u")
    if body.format == "csv":
        return _attachment(csv_text(records, keys, labels).encode("utf-8"),
                           "text/csv; charset=utf-8", f"{stem}.csv")
    return _zip(request, records, root, stem, web.max_export_bytes)


def _attachment(payload: bytes, media_type: str, filename: str) -> Response:
    return Response(payload, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _zip(request, records, root, stem: str, limit: int) -> Response:
    files = [(r.path, *sample_file(root, r)) for r in records]
    total = sum(st.st_size for _, _, st in files)
    if total > limit:
        raise api_error(413, f"the {len(files)} files hold {total} bytes, more than the export "
                        f"limit of {limit} bytes; select fewer")

    def write(tmp: Path) -> None:
        write_zip(tmp, ((rel, path) for rel, path, _ in files))

    return temp_file_response(request, write, prefix="soundatlas-export-", suffix=".zip",
                              media_type="application/zip", filename=f"{stem}.zip")
