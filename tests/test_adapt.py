"""Label-free adaptation: fine-tunes a model on an atlas without labels, registers it beside its
base, embeds every sample, and a killed-and-resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tone
from soundatlas.adapt import ADAPT_NEIGHBOURHOOD, AdaptSettings, adapt
from soundatlas.atlas import Atlas
from soundatlas.errors import ParameterError
from soundatlas.indexing import index_library
from soundatlas.labels import LabelSources
from soundatlas.neighbourhoods import parse_neighbourhood

BIN = Path(sys.executable).parent / "soundatlas"
SETTINGS = AdaptSettings(iterations=40)


@pytest.fixture(scope="module")
def unlabelled(rendered_library_master, tmp_path_factory) -> Path:
    """The small render indexed with no labels at all, and a base model 'b' trained on it."""
    from soundatlas.train import settings_for, train

    root = tmp_path_factory.mktemp("adapt")
    lib = root / "lib"
    shutil.copytree(rendered_library_master, lib)
    (lib / "metadata.csv").unlink()
    # a quarter of the render (short notes, every other pitch) is enough to adapt on, and the
    # teacher's neighbours and the embedding cost in proportion to the frames
    for wav in lib.rglob("*_long.wav"):
        wav.unlink()
    for wav in sorted(lib.rglob("*.wav"))[1::2]:
        wav.unlink()
    index_library(lib, atlas_dir=root / "atlas", n_jobs=1,
                  label_sources=LabelSources(manifest=None, folder=False))
    with Atlas.open(root / "atlas", write=True) as atlas:
        assert atlas.label_summary() == {}
        train(atlas, neighbourhood="input-knn", seed=0, name="b",
              settings=settings_for("fast", iterations=30, batch_size=16, valid_every=30,
                                    checkpoint_every=30))
    return root / "atlas"


def _weights(atlas_dir: Path, name: str) -> dict:
    with Atlas.open(atlas_dir) as atlas:
        d = atlas_dir / atlas.model(name).dir
    return dict(np.load(d / "weights.npz"))


def test_adapt_fine_tunes_without_labels_registers_beside_the_base_and_embeds(unlabelled, tmp_path):
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(unlabelled, atlas_dir)
    with Atlas.open(atlas_dir, write=True) as atlas:
        summary = adapt(atlas, base="b", settings=SETTINGS, seed=3)
        assert summary["done"] and summary["name"] == "b-adapted"
        names = {m.name: m for m in atlas.models()}
        assert set(names) == {"b", "b-adapted"}
        assert names["b-adapted"].n_embedded == atlas.n_samples() == summary["n_embedded"]
        config = names["b-adapted"].config
        assert config["init_from"]["name"] == "b"
        parts = {p["name"] for p in config["neighbourhood"]["parts"]}
        assert parts == {"teacher-map", "augment-pair"}
        assert config["settings"]["lr"] == AdaptSettings().lr
        assert AdaptSettings().augment == "none" and config["settings"]["augment"] is None
    base, tuned = _weights(atlas_dir, "b"), _weights(atlas_dir, "b-adapted")
    assert base.keys() == tuned.keys()
    moved = [k for k in base if not np.array_equal(base[k], tuned[k])]
    assert moved, "adaptation changed no weight"


def test_adapt_killed_and_resumed_ends_where_an_uninterrupted_run_does(unlabelled, tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    shutil.copytree(unlabelled, whole)
    shutil.copytree(unlabelled, halves)
    with Atlas.open(whole, write=True) as atlas:
        adapt(atlas, base="b", settings=SETTINGS, seed=1)
    with Atlas.open(halves, write=True) as atlas:
        first = adapt(atlas, base="b", settings=SETTINGS, seed=1, stop_after=25)
        assert not first["done"] and first["iterations"] == 25
        assert "b-adapted" not in {m.name for m in atlas.models()}
        second = adapt(atlas, base="b", settings=SETTINGS, seed=1, resume=True)
        assert second["done"] and second["resumed_from"] == 25
    a, b = _weights(whole, "b-adapted"), _weights(halves, "b-adapted")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_checkpoint_from_before_the_anchor_resumes_only_without_one(unlabelled, tmp_path):
    from dataclasses import replace

    from soundatlas.train import TrainingError

    shutil.copytree(unlabelled, tmp_path / "a")
    with Atlas.open(tmp_path / "a", write=True) as atlas:
        first = adapt(atlas, base="b", settings=replace(SETTINGS, anchor=0.0), seed=1,
                      stop_after=20)
        assert not first["done"]
        # the checkpoint as a soundatlas without the anchor wrote it: no such setting
        ckpt = tmp_path / "a" / "models" / "b-adapted" / "checkpoint.npz"
        with np.load(ckpt) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays["meta.json"].tobytes())
        del meta["config_key"]["settings"]["anchor"]
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(ckpt, **arrays)
        # that run had no anchor: resuming it with adapt's default would mix two objectives
        with pytest.raises(TrainingError, match=r"settings\.anchor: 0\.0 in the checkpoint, "
                                                r"4\.0 here"):
            adapt(atlas, base="b", settings=replace(SETTINGS, anchor=4.0), seed=1, resume=True)
        done = adapt(atlas, base="b", settings=replace(SETTINGS, anchor=0.0), seed=1,
                     resume=True)
        assert done["done"] and done["resumed_from"] == 20


def test_adapt_with_a_time_limit_finishes_the_model_at_the_step_it_reached(unlabelled, tmp_path):
    from dataclasses import replace

    shutil.copytree(unlabelled, tmp_path / "timed")
    shutil.copytree(unlabelled, tmp_path / "counted")
    with Atlas.open(tmp_path / "timed", write=True) as atlas:
        # a limit the first step always outlasts: the run ends after it, whatever the machine
        summary = adapt(atlas, base="b", settings=replace(SETTINGS, iterations=500), seed=1,
                        minutes=1e-9)
        assert summary["done"] and summary["time_limited"] and summary["minutes"] == 1e-9
        assert summary["iterations"] == 1 and summary["of"] == 500
        assert summary["n_embedded"] == atlas.model("b-adapted").n_embedded > 0
        recorded = atlas.model("b-adapted").config
        assert recorded["settings"]["iterations"] == 1  # the run it was, not the one asked for
        assert recorded["training"]["iterations"] == 1
        assert recorded["training"]["history"][-1]["iteration"] == 1
    with Atlas.open(tmp_path / "counted", write=True) as atlas:
        counted = adapt(atlas, base="b", settings=replace(SETTINGS, iterations=1), seed=1)
        assert counted["done"] and not counted["time_limited"]
    a, b = _weights(tmp_path / "timed", "b-adapted"), _weights(tmp_path / "counted", "b-adapted")
    for k in a:  # the steps it took, asked for as iterations, make the same model
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    run = subprocess.run([str(BIN), "adapt", "--atlas", str(tmp_path / "counted"), "-m", "b",
                          "--name", "cli", "--iterations", "500", "--minutes", "1e-9", "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "model cli, 1 iterations in" in run.stdout and "(the 1e-09 minutes' limit)" in run.stdout
    # one validation, at the end: not "A -> A", which reads as nothing learnt
    assert "measured once, at the end)" in run.stdout and " -> " not in run.stdout
    with Atlas.open(tmp_path / "counted", write=True) as atlas:
        for bad in (0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ParameterError, match="minutes="):
                adapt(atlas, base="b", name="x", settings=SETTINGS, minutes=bad)


def test_map_with_adapt_indexes_embeds_and_adapts_in_one_command(unlabelled, tmp_path):
    shutil.copytree(unlabelled.parent / "lib", tmp_path / "lib")
    shutil.copytree(unlabelled, tmp_path / "atlas")
    base = [str(BIN), "map", str(tmp_path / "lib"), "--atlas", str(tmp_path / "atlas"),
            "-m", "b", "--jobs", "1", "-q"]
    refused = subprocess.run(base + ["--minutes", "1"], capture_output=True, text=True)
    assert refused.returncode == 2 and "give --adapt with it" in refused.stderr
    # an adaptation paused before new files came: map indexes them, so its checkpoint is of
    # other training samples, and map starts the adaptation again (saying so)
    paused = subprocess.run([str(BIN), "adapt", "--atlas", str(tmp_path / "atlas"), "-m", "b",
                             "--stop-after", "2", "-q"], capture_output=True, text=True)
    assert paused.returncode == 0 and "paused at iteration 2" in paused.stdout, paused.stderr
    for i in range(8):  # some of them training samples
        write_tone(tmp_path / "lib" / f"late{i}.wav", 333.0 + 20 * i, seconds=0.5)
    from soundatlas.model import inference_precision

    # map's --precision holds for the adapted model's embedding too (it took auto): the one
    # auto does not give on this machine
    other = "fp32" if inference_precision("auto") == "bf16" else "bf16"
    run = subprocess.run(base + ["--adapt", "--minutes", "1e-9", "--precision", other, "--json"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "the adaptation starts again" in run.stderr and "other training samples" in run.stderr
    out = json.loads(run.stdout)
    assert out["embed"]["model"] == "b" and "index" in out
    adapted = out["adapt"]
    assert adapted["name"] == "b-adapted" and adapted["base"] == "b" and adapted["done"]
    assert adapted["time_limited"] and adapted["iterations"] == 1
    assert adapted["anchor"] == AdaptSettings().anchor  # adapt's defaults
    with Atlas.open(tmp_path / "atlas") as atlas:
        assert atlas.model("b-adapted").n_embedded == atlas.model("b").n_embedded > 0
        assert atlas.embed_precision("b-adapted") == other
    # run again, map keeps the adapted model (it trained it before: not again, and not under
    # a name that would throw its map away)
    again = subprocess.run(base + ["--adapt", "--json"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    kept = json.loads(again.stdout)["adapt"]
    assert kept["kept"] and (kept["iterations"], kept["n_embedded"]) == (1, 0)
    with Atlas.open(tmp_path / "atlas") as atlas:
        assert atlas.model("b-adapted").n_embedded == atlas.model("b").n_embedded


def test_a_time_limit_needs_a_schedule_that_does_not_depend_on_the_last_step(unlabelled,
                                                                             tmp_path):
    from soundatlas.train import settings_for, train

    shutil.copytree(unlabelled, tmp_path / "a")
    with Atlas.open(tmp_path / "a", write=True) as atlas:
        with pytest.raises(ParameterError, match="cosine schedule"):
            train(atlas, neighbourhood="input-knn", name="c", time_limit=5.0,
                  settings=settings_for("fast", iterations=10, schedule="cosine"))
        with pytest.raises(ParameterError, match="time_limit=0"):
            train(atlas, neighbourhood="input-knn", name="c", time_limit=0,
                  settings=settings_for("fast", iterations=10))
        assert "c" not in {m.name for m in atlas.models()}


def test_adapt_keeps_the_base_models_neighbours_with_teacher_knn(unlabelled, tmp_path):
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(unlabelled, atlas_dir)
    settings = AdaptSettings(iterations=40, neighbourhood="teacher-knn:1,augment-pair:1")
    with Atlas.open(atlas_dir, write=True) as atlas:
        summary = adapt(atlas, base="b", settings=settings, seed=3)
        assert summary["done"] and summary["neighbourhood"] == settings.neighbourhood
        # the validation split's copy of the neighbourhood had the teacher too
        assert summary["valid_loss"]["last"] is not None
        config = atlas.model("b-adapted").config
        parts = config["neighbourhood"]["parts"]
        assert [p["name"] for p in parts] == ["teacher-knn", "augment-pair"]
        fitted = config["data"]["neighbourhood"]["parts"]
        assert fitted[0]["spec"] == "teacher-knn" and fitted[0]["n_candidates"] > 0
        assert config["init_from"]["name"] == "b"


def _moved(atlas_dir: Path, name: str, base: str = "b") -> float:
    """How far ``name``'s points lie from ``base``'s: the mean squared distance over the base
    map's spread (embedding the base first)."""
    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas

    with Atlas.open(atlas_dir, write=True) as atlas:
        artifact, registration = resolve_model(atlas, base)
        embed_atlas(atlas, artifact, registration.id)
        ids_b, b = atlas.points(atlas.model(base).id)
        ids_m, m = atlas.points(atlas.model(name).id)
    np.testing.assert_array_equal(ids_b, ids_m)
    return float(np.square(m - b).sum(1).mean() / np.square(b - b.mean(0)).sum(1).mean())


def test_adapt_with_an_anchor_keeps_the_base_models_map(unlabelled, tmp_path):
    moved = {}
    for anchor in (0.0, 5.0):  # the same run (seed, steps, a rate that moves the map) but it
        atlas_dir = tmp_path / f"anchor-{anchor:g}"
        shutil.copytree(unlabelled, atlas_dir)
        settings = AdaptSettings(iterations=40, lr=0.01, anchor=anchor)
        with Atlas.open(atlas_dir, write=True) as atlas:
            summary = adapt(atlas, base="b", settings=settings, seed=3)
            assert summary["done"] and summary["anchor"] == anchor
            assert atlas.model("b-adapted").config["settings"]["anchor"] == anchor
        moved[anchor] = _moved(atlas_dir, "b-adapted")
    assert moved[0.0] > 0.01, f"without the anchor the map hardly moved: {moved}"
    assert moved[5.0] < 0.5 * moved[0.0], moved


def test_adapt_refuses_its_base_name_and_bad_settings(unlabelled):
    with pytest.raises(ParameterError, match="iterations=0"):
        AdaptSettings(iterations=0)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="anchor="):
            AdaptSettings(anchor=bad)
    with pytest.raises(ParameterError, match="needs labels \\(instrument\\)"):
        AdaptSettings(neighbourhood="instrument:1,augment-pair:1")
    with Atlas.open(unlabelled) as atlas:
        with pytest.raises(ParameterError, match="base model's"):
            adapt(atlas, base="b", name="b", settings=SETTINGS)
        with pytest.raises(ParameterError, match="model name 'b/x'"):
            adapt(atlas, base="b", name="b/x", settings=SETTINGS)
        from soundatlas.train import settings_for, train

        with pytest.raises(ParameterError, match="anchor=1 .* give init_from"):
            train(atlas, neighbourhood="input-knn", name="c",
                  settings=settings_for("fast", iterations=1, anchor=1.0))
    assert not parse_neighbourhood(ADAPT_NEIGHBOURHOOD).label_keys  # the default needs no labels


def test_adapt_names_the_kernel_when_the_base_reads_other_features(unlabelled, tmp_path):
    from dataclasses import replace

    from soundatlas.artifact import ModelArtifact, resolve_model
    from soundatlas.cqt_params import KERNELS
    from soundatlas.errors import SoundAtlasError

    with Atlas.open(unlabelled) as atlas:
        shipped, _ = resolve_model(atlas, "default")
        other = next(k for k in KERNELS if k != atlas.cqt_params.kernel)
        cqt = replace(atlas.cqt_params, kernel=other).to_dict()
        ModelArtifact("other", {**shipped.config, "cqt": cqt}, shipped.model).save(tmp_path / "m")
        with pytest.raises(SoundAtlasError, match=f"{other!r} CQT kernel"):
            adapt(atlas, base=str(tmp_path / "m"), settings=SETTINGS)


def test_adapt_on_the_command_line_pauses_names_its_resume_command_and_registers(unlabelled,
                                                                                tmp_path):
    import shlex

    atlas_dir = tmp_path / "atlas"
    shutil.copytree(unlabelled, atlas_dir)
    run = subprocess.run([str(BIN), "adapt", "--atlas", str(atlas_dir), "-m", "b", "--name", "mine",
                          "--iterations", "20", "--lr", "0.005", "-n", "input-knn:2,augment-pair:1",
                          "--augment", "none", "--anchor", "0.1234567", "--seed", "2",
                          "--minutes", "30", "--stop-after",
                          "10", "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    command = run.stdout.split("continue with `")[1].split("`")[0]
    words = shlex.split(command)
    # every setting is named, defaults included (--augment none is the default), so the command
    # still continues this run under a version whose defaults differ
    for flag, value in (("--model", "b"), ("--name", "mine"), ("--iterations", "20"),
                        ("--lr", "0.005"), ("-n", "input-knn:2,augment-pair:1"),
                        ("--augment", "none"), ("--anchor", "0.1234567"), ("--seed", "2"),
                        ("--minutes", "30.0")):
        assert words[words.index(flag) + 1] == value, flag  # all its digits: the same run
    assert words[-1] == "--resume"
    resumed = subprocess.run([str(BIN), *words[1:], "--json", "-q"], capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["done"] and summary["resumed_from"] == 10 and summary["lr"] == 0.005
    assert summary["name"] == "mine" and summary["base"] == "b" and summary["augment"] == "none"
    assert summary["anchor"] == 0.1234567 and summary["minutes"] == 30.0
    assert not summary["time_limited"] and summary["iterations"] == 20
    with Atlas.open(atlas_dir) as atlas:
        assert atlas.model("mine").config["settings"]["augment"] is None
        assert atlas.model("mine").config["settings"]["anchor"] == 0.1234567
    page = subprocess.run([str(BIN), "serve", "--atlas", str(atlas_dir), "--get", "/api/atlas"],
                          capture_output=True, text=True)
    models = json.loads(page.stdout[page.stdout.index("{"):])["models"]
    listed = {m["name"]: m["n_embedded"] for m in models}
    assert set(listed) == {"b", "mine"} and listed["mine"] == summary["n_embedded"] > 0
    bad = subprocess.run([str(BIN), "adapt", "--atlas", str(atlas_dir), "-m", "nothing", "-q"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "no model 'nothing'" in bad.stderr


def test_the_adaptation_line_says_its_losses_and_which_maps_the_page_offers():
    from soundatlas.cli.learn import _adapted_line

    summary = {"base": "default", "name": "default-adapted", "neighbourhood": "input-knn:1",
               "augment": "default", "iterations": 3000, "train_seconds": 600.0,
               "time_limited": False, "n_embedded": 30, "embed_seconds": 2.0,
               "valid_loss": {"first": 0.5, "last": 0.25}, "base_embedded": 30}
    line = _adapted_line(summary, None)
    assert "(validation loss 0.5000 -> 0.2500)" in line
    assert "offers default and default-adapted" in line
    line = _adapted_line({**summary, "valid_loss": {"first": 0.5, "last": 0.5,
                                                   "n_measured": 1}}, None)
    assert "(validation loss 0.5000, measured once, at the end)" in line
    line = _adapted_line({**summary, "base_embedded": 0, "valid_loss": None}, None)
    assert "validation loss" not in line and "offers" not in line
    assert "`soundatlas embed -m default` puts the base's map beside it" in line
