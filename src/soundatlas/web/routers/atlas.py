"""``GET /api/atlas``: what the atlas holds, in one small JSON document (the page's first call)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from soundatlas.web.deps import default_model, embed_hint, model_summary, web_state

router = APIRouter(prefix="/api", tags=["atlas"])


@router.get("/atlas", summary="The atlas: samples, labels, models, the default model")
def get_atlas(request: Request) -> dict:
    """Sample count, the library folder's name, every label key with its values and counts, the
    models with how many samples each has embedded, and the model to show first. When no model
    has embeddings, ``hint`` names the command that makes them, or says that a run
    (``index``, ``embed --again``) is writing the atlas now. ``osc``: where the page's events
    go out over OSC and where OSC comes in (null when off). ``max_upload_bytes``: the largest
    upload (query by example, mosaic) the server takes; the page checks a file against it before
    sending it."""
    web = web_state(request)
    with web.atlas() as atlas:
        models = [model_summary(m) for m in atlas.models()]
        params = atlas.cqt_params
        out = {
            "n_samples": atlas.n_samples(),
            "library": atlas.library.name,
            "frame_rate": params.sr / params.hop_length,
            "labels": atlas.label_summary(),
            "models": models,
            "default_model": default_model(atlas, web.model),
            "osc": {"out": str(web.osc_out.endpoint) if web.osc_out else None,
                    "in": str(web.osc_in.endpoint) if web.osc_in else None},
            "max_upload_bytes": web.max_upload_bytes,
        }
        if not any(m["n_embedded"] > 0 for m in models):
            out["hint"] = embed_hint(atlas)
    return out
