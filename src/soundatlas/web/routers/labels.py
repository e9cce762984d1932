"""``GET /api/labels/{key}``: one label as codes aligned with ``/api/samples/ids``."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request

from soundatlas.web.app import api_error, sorted_values, web_state

router = APIRouter(prefix="/api", tags=["labels"])


@router.get("/labels/{key}", summary="A label's values and every sample's code")
def get_label(key: str, request: Request) -> dict:
    """``values``: the distinct values, sorted (numerically when all are numbers). ``codes``:
    base64 of int32 little-endian, one per sample in the order of ``/api/samples/ids``: the
    index of the sample's value in ``values``, or -1 when it has none."""
    with web_state(request).atlas() as atlas:
        known = atlas.label_summary()
        if key not in known:
            raise api_error(404, f"no label {key!r} in this atlas (known: "
                            f"{', '.join(known) or 'none'})")
        by_id = atlas.labels(key)
        ids = [sid for sid, _, _ in atlas.iter_ids_hashes()]
    values = sorted_values(by_id.values())
    code_of = {v: i for i, v in enumerate(values)}
    codes = np.array([code_of.get(by_id.get(sid), -1) for sid in ids], dtype="<i4")
    return {"key": key, "values": values, "codes": base64.b64encode(codes.tobytes()).decode()}
