"""The model shipped inside the package: small, documented, and it maps a library."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from soundatlas.artifact import DEFAULT_MODEL, SHIPPED_MODELS, ModelArtifact
from soundatlas.cqt import PAPER_CQT, CQTParams

SHIPPED = SHIPPED_MODELS / DEFAULT_MODEL


def test_shipped_model_is_small_and_says_how_it_was_made():
    size = sum(f.stat().st_size for f in SHIPPED.iterdir())
    assert size <= 8 * 1024 * 1024
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["weights_dtype"] == "float16"
    assert config["command"].startswith("soundatlas train")
    # the paper's numbers, computed by either kernel (a config without one: the folded kernel)
    assert replace(CQTParams(**config["cqt"]), kernel=PAPER_CQT.kernel) == PAPER_CQT
    assert config["training"]["iterations"] == config["settings"]["iterations"]
    assert "instrument" in config["metrics"]["accuracy"]
    assert (SHIPPED / "MADE_BY.md").is_file()


def test_shipped_model_loads_and_embeds_a_file(tmp_path):
    from conftest import write_tone
    from soundatlas import audio
    from soundatlas.cqt import cqt
    from soundatlas.embed import embed_features

    artifact = ModelArtifact.load(SHIPPED)
    assert artifact.model.get_params()["dims"] == 3
    wav = write_tone(tmp_path / "a.wav", 330.0, seconds=1.2)
    traj = embed_features(artifact.model, cqt(audio.load(wav).y))
    assert traj.shape == (25, 3) and np.all(np.isfinite(traj))


def test_map_places_same_instrument_samples_closer(rendered_library):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "soundatlas"), "map", str(rendered_library), "--json",
         "-q"], capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["embed"]["model"] == DEFAULT_MODEL
    assert out["embed"]["n_embedded"] == out["index"]["n_samples"] > 0
    from soundatlas.atlas import Atlas

    with Atlas.open(rendered_library / ".soundatlas") as atlas:
        model_id = atlas.model(DEFAULT_MODEL).id
        ids, points = atlas.points(model_id)
        inst = atlas.labels("instrument")
    y = np.array([inst[i] for i in ids])
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    off = ~np.eye(len(y), dtype=bool)
    same = (y[:, None] == y[None]) & off
    assert d[same].mean() < d[~same & off].mean()


def test_made_by_gives_the_command_line_that_trains_the_same_settings():
    """MADE_BY.md spells out, with the current options, the settings the shipped model was
    trained with; the presets' settings may differ from the model's, so the command must say
    every setting that differs."""
    import re
    import shlex
    from dataclasses import asdict

    from soundatlas.cli import build_parser, train_settings
    from soundatlas.train import PRESETS

    text = (SHIPPED / "MADE_BY.md").read_text()
    block = text.split("with the current command line they are:", 1)[1]
    command = re.search(r"soundatlas train .*?(?<!\\)\n", block.replace("\\\n", " "), re.S)
    assert command, "MADE_BY.md has no `soundatlas train` line after the marker"
    argv = shlex.split(command.group(0))[1:]
    args = build_parser().parse_args(argv)
    current = asdict(train_settings(args))
    trained = json.loads((SHIPPED / "config.json").read_text())["settings"]
    free = {"threads", "valid_every", "checkpoint_every", "origin_weight"}
    for key, value in current.items():
        if key in free:
            continue
        # a setting the config does not know did not exist yet: the run had the reference's
        expected = trained.get(key, getattr(PRESETS["paper"], key))
        assert value == expected, f"{key}: the command gives {value!r}, the model had {expected!r}"


def test_an_atlas_embedded_by_an_earlier_shipped_model_is_embedded_anew(tmp_path):
    """A later soundatlas ships another `default`: the atlas's stored points are the earlier
    model's, so placing new sounds beside them is refused with the command that fixes it, and
    `embed` drops them and embeds every sample with the model that ships now."""
    from conftest import make_tone_library, write_tone
    from soundatlas.artifact import check_current, resolve_model
    from soundatlas.atlas import Atlas
    from soundatlas.embed import embed_atlas
    from soundatlas.errors import SoundAtlasError
    from soundatlas.indexing import index_library
    from soundatlas.synth.mosaic import mosaic

    shipped = ModelArtifact.load(SHIPPED)
    lib = make_tone_library(tmp_path / "lib", n_per_folder=2)
    atlas_dir = tmp_path / "atlas"
    index_library(lib, atlas_dir=atlas_dir, params=shipped.cqt, n_jobs=1)
    earlier = {**shipped.config, "trained_as": "an-earlier-default", "command": "soundatlas train"}
    with Atlas.open(atlas_dir, write=True) as atlas:  # the state an earlier soundatlas left
        old_id = atlas.register_model(DEFAULT_MODEL, f"shipped:{DEFAULT_MODEL}", earlier)
        embed_atlas(atlas, shipped, old_id)
        artifact, registration = resolve_model(atlas, DEFAULT_MODEL)
        with pytest.raises(SoundAtlasError, match="earlier version of the shipped model") as no:
            check_current(atlas, registration, artifact)
        assert f"soundatlas embed --atlas {atlas.path}" in str(no.value)
        target = write_tone(tmp_path / "target.wav", 220.0, seconds=1.0)
        with pytest.raises(SoundAtlasError, match="earlier version"):
            mosaic(atlas, DEFAULT_MODEL, target)
    import warnings

    from soundatlas.web import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    with TestClient(create_app(atlas_dir)) as client:  # the page's query by example
        r = client.post(f"/api/models/{DEFAULT_MODEL}/query",
                        files={"file": ("t.wav", target.read_bytes(), "audio/wav")})
        assert r.status_code == 409 and "earlier version" in r.json()["error"]

    cli = str(Path(sys.executable).parent / "soundatlas")
    proc = subprocess.run([cli, "embed", "--atlas", str(atlas_dir), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "every sample is embedded again" in proc.stderr
    assert json.loads(proc.stdout)["n_embedded"] == 6
    with Atlas.open(atlas_dir) as atlas:
        record = atlas.model(DEFAULT_MODEL)
        assert record.config == shipped.config  # registered again: the earlier points dropped
        assert record.n_embedded == 6
        check_current(atlas, record, shipped)  # current now: no error
    again = subprocess.run([cli, "embed", "--atlas", str(atlas_dir), "--json"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "embedded again" not in again.stderr
    assert json.loads(again.stdout)["n_embedded"] == 0


def _ship_model_tool():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "ship_model.py"
    spec = importlib.util.spec_from_file_location("ship_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_config_names_no_machine_path():
    """tools/ship_model.py replaces the paths a training recorded and refuses one it missed; the
    shipped config itself holds none."""
    from soundatlas.artifact import CONFIG, shipped_model_dir

    tool = _ship_model_tool()
    recorded = {"command": "soundatlas train --atlas /srv/runs/gen/corpus/.soundatlas -n x",
                "options": ["--cache=/home/me/cache", "models/default"], "seed": 3,
                "source": "https://example.org/a/b"}
    assert sorted(tool.absolute_paths(recorded)) == ["/home/me/cache",
                                                    "/srv/runs/gen/corpus/.soundatlas"]
    shipped = tool.replace_paths(recorded, {"/srv/runs/gen": "WORK", "/home/me": "HOME"})
    assert shipped["command"] == "soundatlas train --atlas WORK/corpus/.soundatlas -n x"
    assert shipped["options"] == ["--cache=HOME/cache", "models/default"]
    assert shipped["seed"] == 3 and shipped["source"] == recorded["source"]
    assert tool.absolute_paths(shipped) == []
    config = json.loads((shipped_model_dir() / CONFIG).read_text())
    assert tool.absolute_paths(config) == []


def test_the_shipped_map_puts_a_sounds_pitch_on_its_height():
    """The default map's third coordinate is the measured pitch: notes an octave apart sit one
    unit apart, A4 at 0, whatever the instrument-like timbre."""
    from soundatlas.cqt import cqt
    from soundatlas.embed import embed_features

    artifact = ModelArtifact.load(SHIPPED)
    assert artifact.config["architecture"]["pitch_axis"] is True
    assert artifact.model.l4.out_features == 2
    # its lineage: the plane fitted by the tool, then the whole network trained with the height
    # in place (once or more: each step records the one before it)
    assert "--pitch-axis" in artifact.config["command"]
    made_by = artifact.config["init_from"]["made_by"]
    while "pitch_axis" not in made_by:
        assert "--pitch-axis" in made_by["command"], made_by["command"]
        made_by = made_by["init_from"]["made_by"]
    assert made_by["pitch_axis"]["command"].startswith("python tools/pitch_axis_model.py")
    sr = artifact.cqt.sr
    t = np.arange(sr) / sr

    for midi, n_harmonics in ((45, 6), (57, 2), (69, 4), (81, 3)):
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        y = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, n_harmonics + 1))
        traj = embed_features(artifact.model, cqt((0.2 * y).astype(np.float32), params=artifact.cqt))
        middle = traj[len(traj) // 4: 3 * len(traj) // 4, 2]
        assert np.all(middle == np.float32((midi - 69) / 12)), (midi, middle)


def test_a_model_directory_named_like_a_registered_model_is_refused_and_loses_nothing(tmp_path):
    """Two model directories whose configs give the same name: the second is another model, so
    `embed` refuses it, naming both, and keeps the first one's points (it used to answer
    "already had embeddings" and leave the first model's points standing for the second's)."""
    import shutil

    from conftest import make_tone_library
    from soundatlas.atlas import Atlas
    from soundatlas.indexing import index_library

    shipped = ModelArtifact.load(SHIPPED)
    lib = make_tone_library(tmp_path / "lib", n_per_folder=2)
    atlas_dir = tmp_path / "atlas"
    index_library(lib, atlas_dir=atlas_dir, params=shipped.cqt, n_jobs=1)
    first, second = tmp_path / "first", tmp_path / "second"
    for d in (first, second):
        shutil.copytree(SHIPPED, d)
        config = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, "name": "twin"}))
    cli = str(Path(sys.executable).parent / "soundatlas")

    def embed(model):
        return subprocess.run([cli, "embed", "--atlas", str(atlas_dir), "-m", str(model), "--json"],
                              capture_output=True, text=True, timeout=600)

    done = embed(first)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n_embedded"] == 6
    with Atlas.open(atlas_dir) as atlas:
        before = {m.name: m.dir for m in atlas.models()}
        ids, points = atlas.points(atlas.model("twin").id)
    refused = embed(second)
    assert refused.returncode == 1
    assert "already has a model named 'twin'" in refused.stderr
    assert str(first) in refused.stderr and str(second) in refused.stderr
    with Atlas.open(atlas_dir) as atlas:
        assert {m.name: m.dir for m in atlas.models()} == before
        ids_after, after = atlas.points(atlas.model("twin").id)
    assert len(ids) == 6 and np.array_equal(ids, ids_after) and np.array_equal(points, after)
    again = embed(first)  # the same directory again is the same model
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["n_embedded"] == 0
