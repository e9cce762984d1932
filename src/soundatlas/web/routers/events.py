"""``/api/events``: live control over OSC (see ``soundatlas.web.osc`` for the address space).
The page posts what it does (sent on as OSC when the server has ``--osc-out``) and listens on a
stream of server-sent events for what arrives over OSC (``--osc-in``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from soundatlas.web.deps import SampleId, embedded_model, point_or_404, sample_or_404, web_state
from soundatlas.web.osc import MAX_SELECTION, PREFIX, sse
from soundatlas.web.responses import api_error

router = APIRouter(prefix="/api/events", tags=["events"])

KEEPALIVE_S = 15.0


class PageEvent(BaseModel):
    type: Literal["hover", "select", "play", "selection"] = Field(
        description="what happened in the page")
    id: SampleId | None = Field(None, ge=0, lt=2**31, description="the sample (hover, select, play)")
    model: str | None = Field(None, description="the model whose coordinates to send (hover, "
                              "select, play)")
    ids: list[Annotated[SampleId, Field(ge=0, lt=2**31)]] | None = Field(
        None, max_length=MAX_SELECTION,
        description=f"the selected samples (selection; the first {MAX_SELECTION} are enough)")
    count: int | None = Field(None, ge=0, lt=2**31, description="how many samples are selected "
                              "in all (selection; default: the distinct ids given; int32 as OSC "
                              "sends it)")


@router.post("", summary="Send a page event out over OSC (--osc-out)")
def post_event(body: PageEvent, request: Request) -> dict:
    """``hover``, ``select`` and ``play`` send ``/soundatlas/TYPE id path x y z`` with the
    sample's point on ``model``; ``selection`` sends ``/soundatlas/selection n id...`` (the first
    1024: the page sends those and ``count``). Ids and ``count`` are int32 as OSC sends them.
    Answers what was sent. 409 when the server was started without ``--osc-out``."""
    web = web_state(request)
    if web.osc_out is None:
        raise api_error(409, "OSC output is off: start the server with "
                        "soundatlas serve --osc-out HOST:PORT")
    if body.type == "selection":
        if body.ids is None:
            raise api_error(400, "a selection event needs 'ids'")
        ids = list(dict.fromkeys(body.ids))  # in the page's order, each once
        if body.count is not None and body.count < len(ids):
            raise api_error(400, f"count={body.count} is fewer than the {len(ids)} distinct ids "
                            "given: it is how many are selected in all")
        args = [body.count if body.count is not None else len(ids), *ids]
    else:
        if body.id is None or body.model is None:
            raise api_error(400, f"a {body.type} event needs 'id' and 'model'")
        with web.atlas() as atlas:
            record = sample_or_404(atlas, body.id)
            model = embedded_model(atlas, body.model)
            point = point_or_404(web.point_index(atlas, model), body.id, model)
        args = [record.id, record.path, *np.asarray(point, dtype=float).tolist()]
    address = f"{PREFIX}/{body.type}"
    try:
        web.osc_out.send(address, args)
    except OSError as exc:  # e.g. no route to the host
        raise api_error(502, f"could not send OSC to {web.osc_out.endpoint}: "
                        f"{exc.strerror or exc}") from None
    return {"sent": address, "args": args, "to": str(web.osc_out.endpoint)}


@router.get("/stream", summary="Server-sent events of what arrives over OSC (--osc-in)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def get_stream(request: Request) -> StreamingResponse:
    """One JSON event per ``data:`` line: ``{"type": "cursor", "point": [x, y, z]}`` or
    ``{"type": "cursor", "norm": [u, v, w]}``, ``{"type": "play"|"select", "id": N}``, or
    ``{"type": "error", "message": "..."}`` for a message that did not fit. The first event is
    ``{"type": "hello", "osc_in": "HOST:PORT"}``. 409 when the server has no ``--osc-in``."""
    web = web_state(request)
    if web.osc_in is None:
        raise api_error(409, "OSC input is off: start the server with "
                        "soundatlas serve --osc-in PORT")
    queue = web.events.subscribe()

    async def stream():
        try:
            yield sse({"type": "hello", "osc_in": str(web.osc_in.endpoint)})
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:  # the server is stopping
                    return
                yield sse(event)
        finally:
            web.events.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
