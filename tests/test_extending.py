"""Extensions docs/DESIGN.md promises as one-place changes, done from a test: a neighbourhood
(used by the trainer) and an endpoint (served by a real server), each registered where the design
says and used by code that was not edited. The other two are beside the code they extend: a
baseline in tests/test_evaluate.py, a command and a training setting in tests/test_cli.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fastapi import APIRouter, Request  # module level: the toy endpoint's annotations name them

from soundatlas.atlas import Atlas
from soundatlas.indexing import index_library


@pytest.fixture(scope="module")
def small_atlas(rendered_library_master, tmp_path_factory):
    """The small render (flute, trombone, violin) indexed once, with its labels."""
    root = tmp_path_factory.mktemp("extending")
    lib = root / "lib"
    shutil.copytree(rendered_library_master, lib)
    index_library(lib, atlas_dir=root / "atlas", n_jobs=1)
    return root / "atlas"


# -- a neighbourhood ----------------------------------------------------------------------------


@pytest.fixture
def toy_neighbourhood():
    """A neighbourhood registered by the test alone: the positive is the window one frame later
    in the same sample, the negative a window of another sample."""
    from soundatlas.frames import draw_centres
    from soundatlas.neighbourhoods import NEIGHBOURHOODS, Neighbourhood, Triples, register

    @register
    class NextFrame(Neighbourhood):
        name = "toy-next-frame"

        def fit(self, data):
            self.eligible_ = np.flatnonzero(data.lengths > 1)
            self.n_samples_ = data.n_samples
            return self

        def draw(self, rng, n, data):
            self._check_draw(n, data)
            pick = rng.integers(0, len(self.eligible_), size=(n, 2))
            a, q = self.eligible_[pick[:, 0]], self.eligible_[pick[:, 1]]
            c = np.minimum(draw_centres(data, a, rng), data.lengths[a] - 2)
            return Triples(a, c, a.copy(), c + 1, q, draw_centres(data, q, rng))

    yield NextFrame
    NEIGHBOURHOODS.pop(NextFrame.name)


def test_a_neighbourhood_is_one_class(small_atlas, tmp_path, toy_neighbourhood):
    from soundatlas.neighbourhoods import parse_neighbourhood
    from soundatlas.train import settings_for, train

    mix = parse_neighbourhood("toy-next-frame:2,instrument:1")
    assert isinstance(mix.parts[0][0], toy_neighbourhood)
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(small_atlas, atlas_dir)
    with Atlas.open(atlas_dir, write=True) as atlas:
        result = train(atlas, neighbourhood="toy-next-frame:2,instrument:1", seed=0, name="toy",
                       settings=settings_for("fast", iterations=20, batch_size=16,
                                             valid_every=20, checkpoint_every=20))
        assert result.iterations == 20
        config = atlas.model("toy").config
    parts = config["neighbourhood"]["parts"]
    assert [(p["name"], p["weight"]) for p in parts] == [("toy-next-frame", 2.0),
                                                         ("instrument", 1.0)]
    # the origin weight, which the loss reads from the neighbourhood, is the base class's here
    assert config["settings"]["origin_weight"] == pytest.approx((2 * 0.002 + 0.001) / 3)


# -- an endpoint ------------------------------------------------------------------------------------


def test_an_endpoint_is_one_router(small_atlas):
    """A router written as web/routers/ modules are, given to create_app, answers on a real
    uvicorn server with the package's lookups and JSON errors."""
    import json
    import urllib.error
    import urllib.request

    from soundatlas.web.app import create_app
    from soundatlas.web.deps import sample_duration, sample_or_404, web_state
    from soundatlas.web.server import ThreadedServer

    router = APIRouter(prefix="/api", tags=["toy"])

    @router.get("/toy/duration/{sample_id}")
    def duration(sample_id: int, request: Request) -> dict:
        with web_state(request).atlas() as atlas:
            record = sample_or_404(atlas, sample_id)
        return {"id": sample_id, "seconds": sample_duration(record)}

    app = create_app(small_atlas, extra_routers=[router])
    with ThreadedServer(app) as server:  # uvicorn on a port the OS chose
        base = server.url
        with Atlas.open(small_atlas) as atlas:
            first = int(atlas.sample_ids()[0])
            expected = sample_duration(atlas.samples([first])[0])
        with urllib.request.urlopen(f"{base}/api/toy/duration/{first}") as r:
            assert json.load(r) == {"id": first, "seconds": expected}
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/api/toy/duration/999999")
        assert missing.value.code == 404 and "999999" in json.load(missing.value)["error"]
        with urllib.request.urlopen(f"{base}/api/atlas") as r:  # the package's own, untouched
            assert json.load(r)["n_samples"] > 0
