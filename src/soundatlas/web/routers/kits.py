"""``POST /api/kits/export``: a kit built in the page as a zip of its samples, its pattern as a
standard MIDI file and the kit's JSON (``soundatlas.kits``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from soundatlas.kits import Kit, lane_notes, pattern_midi
from soundatlas.web.deps import web_state
from soundatlas.web.responses import api_error, sample_file, temp_file_response

router = APIRouter(prefix="/api/kits", tags=["kits"])


@router.post("/export", summary="A kit as a zip: samples, MIDI pattern, kit JSON",
             response_class=Response,
             responses={200: {"content": {"application/zip": {}}}})
def post_export(request: Request, body: Any = Body(
        ..., description="{name, tempo, swing, lanes: [{id, steps: [16 booleans], volume}]}",
        examples=[{"name": "kit", "tempo": 120, "swing": 0.5,
                   "lanes": [{"id": 1, "steps": [True, False] * 8, "volume": 0.8}]}])
                ) -> Response:
    """The zip holds ``samples/NN-NAME`` (each lane's file, NN its lane from 01),
    ``pattern.mid`` (one bar; General MIDI drum notes on channel 10 for lanes that carry a
    drum or drum class, else notes from middle C on channel 1) and ``kit.json`` (the kit,
    each lane with its path, labels and MIDI note; the page imports it again)."""
    kit = Kit.from_dict(body)  # a ParameterError names what is wrong: 400
    web = web_state(request)
    with web.atlas() as atlas:
        ids = [lane.id for lane in kit.lanes]
        found = {r.id: r for r in atlas.samples(ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise api_error(404, f"no samples with ids {', '.join(map(str, missing))} in this "
                            "atlas")
        labels = atlas.labels_of(ids)
        root = atlas.library
    records = [found[i] for i in ids]
    notes = lane_notes([labels.get(i, {}) for i in ids])
    files = [(r, *sample_file(root, r)) for r in records]
    total = sum(st.st_size for _, _, st in files)
    if total > web.max_export_bytes:
        raise api_error(413, f"the kit's files hold {total} bytes, more than the export limit "
                        f"of {web.max_export_bytes}")
    described = kit.to_dict()
    for lane, r, (channel, note) in zip(described["lanes"], records, notes):
        lane.update(path=r.path, labels=labels.get(r.id, {}), midi_channel=channel + 1,
                    midi_note=note)

    def write(tmp: Path) -> None:
        import zipfile

        from soundatlas.exports import portable_names

        names = portable_names([f"samples/{n:02d}-{Path(r.path).name}"
                                for n, (r, _, _) in enumerate(files, start=1)])
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            for name, (_r, path, _) in zip(names, files):
                z.write(path, arcname=name)
            z.writestr("pattern.mid", pattern_midi(kit, notes))
            z.writestr("kit.json", json.dumps(described, indent=1))

    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in kit.name)[:60] or "kit"
    return temp_file_response(request, write, prefix="soundatlas-kit-", suffix=".zip",
                              media_type="application/zip", filename=f"{safe}.zip")
