"""Training, resume, embedding and the model artefact, on a small rendered library."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from soundatlas.artifact import ModelArtifact, check_cqt, resolve_model
from soundatlas.atlas import Atlas
from soundatlas.cqt import CQTParams
from soundatlas.embed import embed_atlas, embed_features, ensure_registered, point_of
from soundatlas.errors import ParameterError, SoundAtlasError
from soundatlas.indexing import index_library
from soundatlas.neighbourhoods import Neighbourhood, Triples, parse_neighbourhood
from soundatlas.sampling import draw_centres
from soundatlas.train import PRESETS, TrainingError, lr_at, settings_for, train


@pytest.fixture(scope="module")
def rendered_atlas(rendered_library_master, tmp_path_factory):
    """The small render indexed once (tests copy it when they write)."""
    atlas_dir = tmp_path_factory.mktemp("atlas") / "a"
    index_library(rendered_library_master, atlas_dir=atlas_dir, n_jobs=1)
    return atlas_dir


@pytest.fixture
def atlas(rendered_atlas, tmp_path):
    import shutil

    dst = tmp_path / "atlas"
    shutil.copytree(rendered_atlas, dst)
    with Atlas.open(dst, write=True) as a:
        yield a


def short(preset="fast", **kw):
    kw.setdefault("iterations", 60)
    kw.setdefault("valid_every", 20)
    kw.setdefault("checkpoint_every", 20)
    kw.setdefault("batch_size", 16)
    return settings_for(preset, **kw)


def test_loss_falls_and_same_instrument_ends_closer(atlas):
    s = short(iterations=200, valid_every=100, checkpoint_every=200, batch_size=16)
    result = train(atlas, neighbourhood="instrument", settings=s, seed=1, name="inst")
    first, last = result.history[0], result.history[-1]
    assert last["valid_loss"] < first["valid_loss"]
    artifact, reg = resolve_model(atlas, "inst")
    summary = embed_atlas(atlas, artifact, reg.id)
    assert summary.n_embedded == atlas.n_samples()
    ids, points = atlas.points(reg.id)
    inst = atlas.labels("instrument")
    y = np.array([inst[i] for i in ids])
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    assert d[same].mean() < 0.8 * d[~same & ~np.eye(len(y), dtype=bool)].mean()


def test_bf16_training_learns_and_differs_from_fp32_only_in_rounding(atlas):
    s = short(iterations=80, valid_every=40, checkpoint_every=80, precision="bf16")
    bf = train(atlas, neighbourhood="instrument", settings=s, seed=2, name="bf")
    assert bf.history[-1]["valid_loss"] < bf.history[0]["valid_loss"]
    config = json.loads((atlas.path / "models/bf/config.json").read_text())
    assert config["precision"] == "bf16" and config["settings"]["precision"] == "bf16"
    fp = train(atlas, neighbourhood="instrument", settings=replace(s, precision="fp32"), seed=2,
               name="fp")
    # the same run in other arithmetic: close, but not bit-identical (bf16 was really used)
    a = ModelArtifact.load(atlas.path / "models/bf").model.state_dict()
    b = ModelArtifact.load(atlas.path / "models/fp").model.state_dict()
    assert not torch.equal(a["l4.weight"], b["l4.weight"])
    assert abs(bf.history[0]["valid_loss"] - fp.history[0]["valid_loss"]) < 0.1


def test_precision_auto_follows_the_hardware(monkeypatch):
    import soundatlas.train as tr

    fast = settings_for("fast")
    assert tr.resolve_fused_pool(fast, "cpu") and not tr.resolve_fused_pool(fast, "cuda")
    assert tr.resolve_fused_pool(replace(fast, fused_pool="on"), "cuda")
    assert not tr.resolve_fused_pool(settings_for("paper"), "cpu")

    auto = settings_for("paper", precision="auto")
    monkeypatch.setattr(tr, "native_bf16", lambda device="cpu": False)
    assert tr.resolve_precision(auto) == "fp32"
    monkeypatch.setattr(tr, "native_bf16", lambda device="cpu": True)
    assert tr.resolve_precision(auto) == "bf16"
    assert tr.resolve_precision(settings_for("paper")) == "fp32"  # the reference stays fp32
    with pytest.raises(ParameterError, match="precision"):
        settings_for("paper", precision="fp8")


def test_resume_after_a_stop_gives_the_same_weights(atlas):
    s = short(preset="fast", iterations=40, checkpoint_every=10, valid_every=20)
    train(atlas, neighbourhood="pitch", settings=s, seed=3, name="whole")
    part = train(atlas, neighbourhood="pitch", settings=s, seed=3, name="parts", stop_after=25)
    assert part.iterations == 25
    assert not (atlas.path / "models/parts/weights.npz").exists()  # not a model yet
    rest = train(atlas, neighbourhood="pitch", settings=s, seed=3, name="parts", resume=True)
    assert rest.resumed_from == 25  # a stop writes a checkpoint where it stops
    a = ModelArtifact.load(atlas.path / "models/whole").model.state_dict()
    b = ModelArtifact.load(atlas.path / "models/parts").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    hist_a = json.loads((atlas.path / "models/whole/config.json").read_text())["training"]["history"]
    hist_b = json.loads((atlas.path / "models/parts/config.json").read_text())["training"]["history"]
    assert [h["valid_loss"] for h in hist_a] == [h["valid_loss"] for h in hist_b]
    # the training loss's moving average goes on from the checkpoint too
    assert [h["train_loss"] for h in hist_a] == [h["train_loss"] for h in hist_b]


def test_a_name_the_atlas_holds_is_refused_unless_asked_to_replace_it(atlas):
    from soundatlas.embed import embed_atlas

    s = short(iterations=20, checkpoint_every=10, valid_every=10)
    train(atlas, neighbourhood="pitch", settings=s, seed=1, name="m")
    embed_atlas(atlas, ModelArtifact.load(atlas.path / "models/m"), atlas.model("m").id)
    n = atlas.model("m").n_embedded
    assert n > 0
    with pytest.raises(ParameterError, match=r"already has a model named 'm' .*--replace"):
        train(atlas, neighbourhood="instrument", settings=s, seed=1, name="m")
    with pytest.raises(ParameterError, match="shipped"):
        train(atlas, neighbourhood="pitch", settings=s, seed=1, name="default")
    # a finished run resumed changes nothing: its model and its map stand
    again = train(atlas, neighbourhood="pitch", settings=s, seed=1, name="m", resume=True)
    assert again.iterations == 20 and atlas.model("m").n_embedded == n
    # asked to, a run takes the name (and the old model's embeddings go)
    train(atlas, neighbourhood="instrument", settings=s, seed=1, name="m", replace=True)
    assert atlas.model("m").n_embedded == 0
    assert atlas.model("m").config["neighbourhood"]["name"] == "instrument"


@pytest.mark.parametrize("kill_at", [13, 40])
def test_train_killed_anywhere_resumes_to_the_weights_of_an_uninterrupted_run(
        rendered_atlas, tmp_path, kill_at):
    """SIGKILL between two checkpoints (13) or after the last step, before the model is saved
    (40), each held still in the progress callback so the kill lands there on any machine;
    `train --resume` then ends with the weights a run never interrupted has."""
    import shutil
    import signal
    import subprocess
    import sys

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    shutil.copytree(rendered_atlas, killed)
    shutil.copytree(rendered_atlas, whole)
    kw = dict(iterations=40, checkpoint_every=10, valid_every=20, batch_size=16, threads=1)
    code = ("import sys, threading\n"
            "from soundatlas.atlas import Atlas\n"
            "from soundatlas.train import settings_for, train\n"
            "def hold(done, total, info):\n"
            f"    if done >= {kill_at}:\n"
            "        print(done, flush=True)\n"
            "        threading.Event().wait()\n"
            "with Atlas.open(sys.argv[1], write=True, tidy=False) as atlas:\n"
            f"    train(atlas, neighbourhood='pitch', settings=settings_for('fast', **{kw!r}),\n"
            "          seed=3, name='m', progress=hold)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(killed)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert int(proc.stdout.readline()) == kill_at
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with Atlas.open(killed) as a:
        assert "m" not in {m.name for m in a.models()}  # not a model yet
    threads = torch.get_num_threads()  # train sets the process's; later tests expect theirs
    try:
        with Atlas.open(killed, write=True, tidy=False) as a:
            rest = train(a, neighbourhood="pitch", settings=settings_for("fast", **kw), seed=3,
                         name="m", resume=True)
            assert 0 < rest.resumed_from <= kill_at  # from the last checkpoint it wrote
        with Atlas.open(whole, write=True, tidy=False) as a:
            train(a, neighbourhood="pitch", settings=settings_for("fast", **kw), seed=3,
                  name="m")
    finally:
        torch.set_num_threads(threads)
    x = ModelArtifact.load(killed / "models/m").model.state_dict()
    y = ModelArtifact.load(whole / "models/m").model.state_dict()
    for k in x:
        torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


def test_non_finite_loss_stops_with_a_message_and_keeps_the_checkpoint(atlas):
    s = short(preset="paper", iterations=200, lr=1e30, checkpoint_every=1, valid_every=1000)
    with pytest.raises(TrainingError, match="loss became") as exc:
        train(atlas, neighbourhood="instrument", settings=s, seed=0, name="boom")
    assert "last good checkpoint" in str(exc.value)
    assert (atlas.path / "models/boom/checkpoint.npz").is_file()


def test_a_fine_tuning_that_diverges_is_stopped_or_named_not_registered_silently(tmp_path):
    """The fast preset's rate fine-tunes the shipped model into the weeds: weights that stop
    being finite end the run with the TrainingError that says what is kept (not a message of the
    file writer), and a loss that ends a hundred times where it began is named."""
    from soundatlas.train import divergence

    import soundfile as sf

    lib, sr = tmp_path / "lib", 16000
    t = np.arange(int(sr * 0.8)) / sr
    noise = np.random.default_rng(0)
    for kind in ("sine", "square", "saw"):  # three waveforms, ten pitches each
        (lib / kind).mkdir(parents=True)
        for i in range(10):
            f = 440 * 2 ** ((48 + 2 * i - 69) / 12)
            y = {"sine": np.sin(2 * np.pi * f * t), "square": np.sign(np.sin(2 * np.pi * f * t)) / 2,
                 "saw": 2 * ((f * t) % 1) - 1}[kind]
            y = 0.5 * y * np.exp(-3 * t) + 0.001 * noise.standard_normal(len(t))
            sf.write(lib / kind / f"{i}.wav", y.astype(np.float32), sr, subtype="PCM_16")
    index_library(lib, n_jobs=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with Atlas.open(lib / ".soundatlas", write=True) as atlas:
            with pytest.raises(TrainingError, match="weights became non-finite by iteration 60; "
                                                    "no checkpoint was written before it"):
                train(atlas, neighbourhood="label:folder", settings=settings_for(
                    "fast", iterations=60, checkpoint_every=1000, valid_every=1000, threads=1),
                    seed=0, name="far", init_from="default")
            assert "far" not in {m.name for m in atlas.models()}
        # the run's one thread was the run's: the caller's later torch work keeps its three
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    assert divergence([1.7, None, 1.5]) is None
    warning = divergence([1.742, 8.8e10])
    assert "rose from 1.742 to 8.8e+10" in warning and "--lr" in warning


def test_learning_rate_schedule():
    s = settings_for("fast", iterations=1000, warmup=100, lr=1e-3, schedule="cosine")
    assert lr_at(s, 0) == pytest.approx(1e-5)
    assert lr_at(s, 99) == pytest.approx(1e-3)
    assert lr_at(s, 550) == pytest.approx(0.5e-3, rel=1e-2)
    assert lr_at(s, 999) < 1e-6
    for preset in PRESETS.values():  # both constant: the preset's rate from first step to last
        assert lr_at(preset, 0) == lr_at(preset, preset.iterations - 1) == preset.lr


def test_presets_and_bad_settings():
    paper, fast = settings_for("paper"), settings_for("fast")
    assert (paper, fast) == (PRESETS["paper"], PRESETS["fast"])
    # the paper's reference training (docs/DESIGN.md §1), in its own arithmetic
    assert (paper.optimizer, paper.lr, paper.momentum, paper.batch_size, paper.iterations) == \
        ("sgd", 0.02, 0.0, 32, 50_000)
    assert (paper.precision, paper.fused_pool, paper.noise_rng, paper.standardize) == \
        ("fp32", "off", "numpy", False)
    # fast keeps the paper's network, loss, noise and plain SGD, in fewer steps
    kept = ("optimizer", "momentum", "batch_size", "m_p", "m_n", "origin_weight", "noise_mean",
            "noise_std", "augment")
    assert {k: getattr(fast, k) for k in kept} == {k: getattr(paper, k) for k in kept}
    assert fast.iterations < paper.iterations
    assert paper.augment is None  # augmentation is opt-in in every preset
    with pytest.raises(ParameterError, match="fused_pool"):
        settings_for("fast", fused_pool="yes")
    with pytest.raises(ParameterError, match="noise_rng"):
        settings_for("fast", noise_rng="cupy")
    with pytest.raises(ParameterError, match="unknown preset"):
        settings_for("slow")
    with pytest.raises(ParameterError, match="lr"):
        settings_for("fast", lr=-1.0)


def test_config_records_what_made_the_model(atlas):
    train(atlas, neighbourhood="instrument-pitch-2", settings=short(iterations=20), seed=5, name="cfg")
    config = json.loads((atlas.path / "models/cfg/config.json").read_text())
    assert config["architecture"]["arch"] == "paper"
    assert config["cqt"] == atlas.cqt_params.to_dict()
    assert config["neighbourhood"]["name"] == "instrument-pitch-2"
    assert config["seed"] == 5 and config["preset"] == "fast"
    assert config["split"]["n_train"] > 0 and len(config["data"]["fingerprint"]) == 24
    assert config["settings"]["origin_weight"] == \
        parse_neighbourhood("instrument-pitch-2").origin_weight  # asked of the neighbourhood
    assert [m.name for m in atlas.models()] == ["cfg"]


def test_embedding_is_incremental_and_matches_the_model(atlas):
    train(atlas, neighbourhood="instrument", settings=short(iterations=20), seed=0, name="m")
    artifact, reg = resolve_model(atlas, "m")
    first = embed_atlas(atlas, artifact, reg.id, precision="fp32")  # the exact path
    again = embed_atlas(atlas, artifact, reg.id, precision="fp32")
    assert first.n_embedded == atlas.n_samples() and again.n_embedded == 0
    assert atlas.embed_precision("m") == "fp32"
    rec = atlas.samples()[7]
    traj = atlas.trajectory(reg.id, rec.id)
    assert traj.shape == (rec.n_frames, 3)
    # the stored trajectory is the model on the stored features with the sample's own noise
    from soundatlas.embed import _noise_rng

    again = embed_features(artifact.model, atlas.features(rec), rng=_noise_rng(rec.hash))
    np.testing.assert_allclose(again, traj, atol=1e-5)
    # and it equals the plain forward pass on the sample's windows (fully convolutional = per window)
    from soundatlas.sampling import add_noise

    noised = add_noise(np.pad(atlas.features(rec), ((5, 4), (0, 0))), _noise_rng(rec.hash))
    w = np.stack([noised[f : f + 10] for f in range(rec.n_frames)])
    with torch.no_grad():
        direct = artifact.model(torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(direct, traj, atol=1e-4)


def test_model_with_other_cqt_parameters_is_refused(atlas):
    train(atlas, neighbourhood="instrument", settings=short(iterations=10), seed=0, name="m")
    artifact, _ = resolve_model(atlas, "m")
    artifact.config["cqt"] = dict(artifact.config["cqt"], hop_length=400)
    with pytest.raises(SoundAtlasError, match="hop_length"):
        check_cqt(artifact, atlas.cqt_params)
    with pytest.raises(SoundAtlasError, match="other CQT parameters"):
        ensure_registered(atlas, artifact, None)


def test_point_is_energy_weighted():
    traj = np.array([[0, 0, 0], [10, 10, 10], [2, 2, 2]], np.float32)
    np.testing.assert_allclose(point_of(traj, np.array([0.0, 0.0, 1.0])), [2, 2, 2])
    np.testing.assert_allclose(point_of(traj, np.zeros(3)), traj.mean(axis=0))


def test_embed_many_equals_one_file_at_a_time():
    from soundatlas.embed import embed_many
    from soundatlas.model import build_model

    model = build_model("paper").eval()
    rng = np.random.default_rng(0)
    files = [rng.random((n, 192)).astype(np.float32) * 4 for n in (1, 7, 33, 120)]
    together = embed_many(model, files, rngs=[np.random.default_rng(i) for i in range(4)])
    for i, (F, z) in enumerate(zip(files, together)):
        alone = embed_features(model, F, rng=np.random.default_rng(i))
        assert z.shape == (len(F), 3)
        np.testing.assert_allclose(z, alone, atol=1e-5)


def test_fused_pool_trains_the_same_function(atlas, monkeypatch):
    """In fp32 the fused tanh + max-pool step gives the reference run's weights up to the pairs
    whose tanh rounds equal (there its gradient goes to the larger value, test_model.py), and
    the trainer really uses it. On this data those pairs move the weights by about 2.5e-7 in 30
    steps; a backward that sends every gradient to a pair's first row moves them by 1.1e-4."""
    import soundatlas.model as model_module

    calls = []
    real = model_module._MaxPoolTanh.apply
    monkeypatch.setattr(model_module._MaxPoolTanh, "apply",
                        lambda x: calls.append(x.shape) or real(x))
    s = short(preset="paper", iterations=30, valid_every=30, checkpoint_every=30,
              fused_pool="auto")
    train(atlas, neighbourhood="instrument", settings=s, seed=4, name="fused")
    assert len(calls) >= 2 * 30  # two pooled layers per step
    n_calls = len(calls)
    train(atlas, neighbourhood="instrument", settings=replace(s, fused_pool="off"), seed=4,
          name="layers")
    assert len(calls) == n_calls  # the reference run never calls it
    a = ModelArtifact.load(atlas.path / "models/fused").model.state_dict()
    b = ModelArtifact.load(atlas.path / "models/layers").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=2e-6)
    config = json.loads((atlas.path / "models/fused/config.json").read_text())
    assert config["settings"]["fused_pool"] == "auto" and config["fused_pool"] is True


# -- neighbourhoods as objects, mixtures, augmentation, fine-tuning ------------------------------


class NextSample(Neighbourhood):
    """A neighbourhood the trainer has never heard of: the positive is the next sample, the
    negative the one half-way round; its own origin weight."""

    name = "test-next-sample"
    origin_weight = 0.005

    def fit(self, data):
        self.usable_ = np.flatnonzero(data.lengths > 0)
        self.n_samples_ = data.n_samples
        return self

    def draw(self, rng, n, data):
        self._check_draw(n, data)
        m = len(self.usable_)
        i = rng.integers(0, m, size=n)
        a, p, q = (self.usable_[(i + k) % m] for k in (0, 1, m // 2))
        c = draw_centres(data, np.concatenate([a, p, q]), rng)
        return Triples(a, c[:n], p, c[n:2 * n], q, c[2 * n:])


def test_a_new_neighbourhood_class_trains_with_no_change_to_the_trainer(atlas):
    result = train(atlas, neighbourhood=NextSample(), settings=short(iterations=12, valid_every=6),
                   seed=0)
    assert result.name == "test-next-sample-fast-s0" and result.iterations == 12
    config = json.loads((result.directory / "config.json").read_text())
    assert config["neighbourhood"] == {"name": "test-next-sample"}
    assert config["settings"]["origin_weight"] == 0.005  # asked of the neighbourhood
    assert all(h["valid_loss"] is not None for h in result.history)  # a copy drew validation


def test_mixture_with_augmentation_resumes_exactly_and_is_recorded(atlas):
    """A mixture (with a part this atlas cannot serve: one sample has a mood) and augmentation:
    stopped and resumed, it ends with the weights of an uninterrupted run; the config records
    both."""
    from soundatlas.augment import Augment

    atlas.tag(atlas.sample_ids()[:1].tolist(), add=["mood:dark"])
    spec = "instrument:1,pitch:1,label:mood:1,augment-pair:0.5"
    s = short(iterations=30, checkpoint_every=10, valid_every=15, augment=Augment.default())
    whole = train(atlas, neighbourhood=spec, settings=s, seed=3, name="whole")
    skipped = whole.neighbourhood["skipped"]
    assert [k["spec"] for k in skipped] == ["label:mood"]
    assert "needs at least 2 keys" in skipped[0]["reason"]
    part = train(atlas, neighbourhood=spec, settings=s, seed=3, name="parts", stop_after=17)
    assert part.iterations == 17
    train(atlas, neighbourhood=spec, settings=s, seed=3, name="parts", resume=True)
    a = ModelArtifact.load(atlas.path / "models/whole")
    b = ModelArtifact.load(atlas.path / "models/parts")
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(v, b.model.state_dict()[k], rtol=0, atol=0)
    assert [h["valid_loss"] for h in a.config["training"]["history"]] == \
        [h["valid_loss"] for h in b.config["training"]["history"]]

    nb = a.config["neighbourhood"]
    assert nb["name"] == "mixture" and nb["spec"] == "instrument:1,pitch:1,label:mood:1,"\
        "augment-pair:0.5"
    assert [(p["name"], p["weight"]) for p in nb["parts"]] == [
        ("instrument", 1.0), ("pitch", 1.0), ("label", 1.0), ("augment-pair", 0.5)]
    assert a.neighbourhood.spec == a.neighbourhood_spec == nb["spec"]
    assert Augment(**a.config["settings"]["augment"]) == Augment.default()
    served = [(nb, w) for nb, w in parse_neighbourhood(spec).parts if nb.spec != "label:mood"]
    assert a.config["settings"]["origin_weight"] == pytest.approx(  # its served parts' mean
        sum(w * nb.origin_weight for nb, w in served) / sum(w for _, w in served))
    with pytest.raises(TrainingError, match="other settings"):
        train(atlas, neighbourhood=spec, settings=replace(s, augment=None), seed=3, name="parts",
              resume=True)


def test_resuming_on_other_training_samples_says_that_the_data_changed(atlas):
    s = short(iterations=40, checkpoint_every=10, valid_every=20)
    train(atlas, neighbourhood="pitch", settings=s, seed=3, name="p", stop_after=10)
    gone = next(sid for sid, split in atlas.splits().items() if split == "train")
    atlas.remove_samples([gone])  # as an index run after a file was deleted
    with pytest.raises(TrainingError, match="made on other training samples"):
        train(atlas, neighbourhood="pitch", settings=s, seed=3, name="p", resume=True)


def test_a_resume_says_what_it_resumed_and_when_other_threads_change_the_sums(atlas):
    """A typo'd --name with --resume started afresh without a word, and a resume on another
    thread count went on to weights no uninterrupted run has (the researcher's review)."""
    kw = dict(neighbourhood="instrument", seed=0, name="r")
    first = train(atlas, settings=short(iterations=8, checkpoint_every=4, threads=1),
                  stop_after=4, **kw)
    assert first.resume_note is None  # not asked to resume
    again = train(atlas, settings=short(iterations=8, checkpoint_every=4, threads=2),
                  resume=True, **kw)
    assert again.resumed_from == 4
    assert again.resume_note.startswith("resumed at iteration 4 with 2 threads, where the run "
                                        "before used 1")
    done = train(atlas, settings=short(iterations=8, checkpoint_every=4, threads=2),
                 resume=True, **kw)
    assert done.resume_note == "finished at iteration 8 already: its model is kept as it is"
    fresh = train(atlas, settings=short(iterations=4, threads=1), resume=True,
                  **{**kw, "name": "r-typo"})
    assert fresh.resumed_from is None and fresh.resume_note.startswith("no checkpoint in ")


def test_a_neighbourhood_whose_label_is_missing_fails_clearly(atlas):
    """Alone or in a mixture: a mixture left out a part whose label was a typo, and trained on
    the rest as if nothing were wrong (the researcher's review)."""
    with pytest.raises(ParameterError, match="label 'drum_class' is not in the atlas"):
        train(atlas, neighbourhood="label:drum_class", settings=short(iterations=5), seed=0)
    for spec in ("label:drum_class,label:genre", "label:instrumnet,pitch:1"):
        with pytest.raises(ParameterError, match=r"is not in the atlas .*\(named by -n "
                                                 r".*\): correct it, or leave out the part"):
            train(atlas, neighbourhood=spec, settings=short(iterations=5))
    assert not atlas.models()  # nothing trained, nothing registered


@pytest.mark.parametrize("name", ["a/b", "../../outside", "..", ".", " x", "x\n", "a\\b",
                                  "x" * 101])
def test_a_model_name_that_cannot_be_a_folder_and_a_url_segment_is_refused(atlas, name):
    before = sorted(p.name for p in (atlas.path / "models").iterdir()) \
        if (atlas.path / "models").exists() else []
    with pytest.raises(ParameterError, match="model name"):
        train(atlas, neighbourhood="instrument", settings=short(iterations=1), seed=0, name=name)
    after = sorted(p.name for p in (atlas.path / "models").iterdir()) \
        if (atlas.path / "models").exists() else []
    assert after == before and not (atlas.path.parent / "outside").exists()  # nothing made


def test_init_from_fine_tunes_a_model_label_free_and_resumes_exactly(atlas):
    from soundatlas.neighbourhoods import AugmentPair, InputKNN, Mixture

    train(atlas, neighbourhood="instrument", settings=short(iterations=20), seed=0, name="base")
    base = ModelArtifact.load(atlas.path / "models/base")

    def label_free():
        return Mixture([(InputKNN(k=5, far=60, n_candidates=3000, seed=1), 1.0),
                        (AugmentPair(), 1.0)])

    s = short(iterations=24, checkpoint_every=8, valid_every=12, lr=1e-3)
    train(atlas, neighbourhood=label_free(), settings=s, seed=1, name="adapted", init_from="base")
    train(atlas, neighbourhood=label_free(), settings=s, seed=1, name="split", init_from=base,
          stop_after=10)
    train(atlas, neighbourhood=label_free(), settings=s, seed=1, name="split", init_from=base,
          resume=True)
    adapted = ModelArtifact.load(atlas.path / "models/adapted")
    split = ModelArtifact.load(atlas.path / "models/split")
    start, tuned = base.model.state_dict(), adapted.model.state_dict()
    for k, v in tuned.items():
        torch.testing.assert_close(v, split.model.state_dict()[k], rtol=0, atol=0)
    # the input statistics are the base model's, the weights moved a little from its weights
    assert torch.equal(tuned["in_mean"], start["in_mean"])
    assert torch.equal(tuned["in_scale"], start["in_scale"])
    moved = max((tuned[k] - start[k]).abs().max().item() for k in tuned)
    assert 0 < moved < 0.05
    assert adapted.config["architecture"] == base.config["architecture"]
    assert adapted.config["init_from"]["name"] == "base"
    assert adapted.config["settings"]["standardize"] is True

    other = ModelArtifact.load(atlas.path / "models/base")
    other.config["cqt"] = dict(other.config["cqt"], hop_length=400)
    with pytest.raises(SoundAtlasError, match="other CQT parameters"):
        train(atlas, neighbourhood=label_free(), settings=s, init_from=other)
    with pytest.raises(ParameterError, match="dims=2"):
        train(atlas, neighbourhood=label_free(), settings=s, init_from=base, dims=2)


def test_train_command_line_reads_mixtures_and_augmentation():
    from soundatlas.augment import Augment
    from soundatlas.cli import build_parser, train_settings

    parser = build_parser()
    args = parser.parse_args(["train", "-n", "instrument:1,augment-pair:0.5", "--augment",
                              "default"])
    assert train_settings(args).augment == Augment.default()
    args = parser.parse_args(["train", "-n", "instrument", "--augment", "gain=9@1,noise=20:30"])
    assert train_settings(args).augment == Augment(gain_p=1.0, gain_db=9.0, noise_p=0.3,
                                                   noise_snr_db=(20.0, 30.0))
    assert train_settings(parser.parse_args(["train", "-n", "instrument"])).augment is None
    args = parser.parse_args(["train", "-n", "pitch", "--augment", "none"])
    assert train_settings(args).augment is None
    for bad in (["-n", "timbre"], ["-n", "pitch", "--augment", "reverb"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["train", *bad])
        assert exc.value.code == 2


def test_a_pitch_axis_model_trains_its_plane_and_keeps_the_measured_height(atlas):
    """`train --pitch-axis`: L4 learns two coordinates, the third is the frame's pitch, in
    training, in the stored trajectories and after fine-tuning; a base without the axis is not
    given one by --init-from."""
    from soundatlas.embed import _noise_rng
    from soundatlas.pitch_axis import frame_height

    r = train(atlas, neighbourhood="instrument", settings=short(), seed=0, name="pa",
              pitch_axis=True)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    artifact, reg = resolve_model(atlas, "pa")
    assert artifact.config["architecture"]["pitch_axis"] is True
    assert artifact.model.l4.out_features == 2
    embed_atlas(atlas, artifact, reg.id, precision="fp32")
    for rec in atlas.samples()[:5]:
        traj = atlas.trajectory(reg.id, rec.id)
        height = frame_height(torch.from_numpy(atlas.features(rec)), 24).numpy()
        assert traj.shape == (rec.n_frames, 3)
        np.testing.assert_array_equal(traj[:, 2], height)
        again = embed_features(artifact.model, atlas.features(rec), rng=_noise_rng(rec.hash))
        np.testing.assert_allclose(again, traj, atol=1e-5)
    s = short(iterations=20, lr=1e-3)
    train(atlas, neighbourhood="pitch", settings=s, seed=1, name="pa2", init_from="pa")
    tuned = ModelArtifact.load(atlas.path / "models/pa2")
    assert tuned.config["architecture"] == artifact.config["architecture"]
    assert not torch.equal(tuned.model.l4.weight, artifact.model.l4.weight)
    # its config says how its base was made: the lineage of a shipped model is in its config
    assert tuned.config["init_from"]["made_by"]["command"] == artifact.config["command"]
    assert tuned.config["init_from"]["made_by"].get("init_from") == artifact.config.get("init_from")
    train(atlas, neighbourhood="instrument", settings=short(iterations=20), seed=0, name="flat")
    with pytest.raises(ParameterError, match="pitch_axis=True"):
        train(atlas, neighbourhood="pitch", settings=s, init_from="flat", pitch_axis=True)


PITCH_AXIS_TOOL = Path(__file__).resolve().parents[1] / "tools" / "pitch_axis_model.py"


def _pitch_axis_tool():
    """tools/pitch_axis_model.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pitch_axis_model", PITCH_AXIS_TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _assert_network_kept(model, base):
    """``model`` has ``base``'s layers L0-L3 (and input statistics), weight for weight."""
    for key, value in base.state_dict().items():
        if not key.startswith("l4."):
            assert torch.equal(model.state_dict()[key], value), key


def test_the_pitch_axis_tool_keeps_the_network_and_fits_a_plane_beside_the_height(atlas):
    """tools/pitch_axis_model.py (how the shipped model was made): the new model has the
    base's layers L0-L3, a 2-D L4 and the measured height, and is registered in the atlas."""
    from soundatlas.pitch_axis import frame_height

    train(atlas, neighbourhood="instrument", settings=short(iterations=20), seed=0, name="base")
    tool = _pitch_axis_tool()
    tool.main(["--atlas", str(atlas.path), "--base", "base", "--name", "base-pa", "--steps", "30"])
    base = ModelArtifact.load(atlas.path / "models/base")
    with Atlas.open(atlas.path) as again:
        made, reg = resolve_model(again, "base-pa")
    assert made.config["architecture"]["pitch_axis"] is True
    assert made.config["pitch_axis"]["base"] == "base" and made.config["pitch_axis"]["steps"] == 30
    _assert_network_kept(made.model, base.model)
    assert made.model.l4.weight.shape == (2, 256)
    rec = atlas.samples()[3]
    traj = embed_features(made.model, atlas.features(rec))
    np.testing.assert_array_equal(traj[:, 2], frame_height(torch.from_numpy(atlas.features(rec)),
                                                           24).numpy())
    assert made.config["pitch_axis"]["classes"] == "drum, bank+instrument, instrument"
    # other classes, another plane on the same network; a label the atlas lacks is named
    tool.main(["--atlas", str(atlas.path), "--base", "base", "--name", "base-pp", "--steps", "30",
               "--classes", "pitch"])
    with Atlas.open(atlas.path) as again:
        by_pitch, _ = resolve_model(again, "base-pp")
    assert by_pitch.config["pitch_axis"]["classes"] == "pitch"
    assert by_pitch.config["pitch_axis"]["frames"] == made.config["pitch_axis"]["frames"]
    # --also: another atlas's frames join the fit (here the same atlas again: twice the frames).
    # The tool runs in another process while this one holds the atlas's writer lock (the
    # fixture's), as beside an `embed`: registering a model writes no array file.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(PITCH_AXIS_TOOL), "--atlas", str(atlas.path), "--base", "base",
                           "--name", "base-2x", "--steps", "3", "--also", str(atlas.path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with Atlas.open(atlas.path) as again:
        twice, _ = resolve_model(again, "base-2x")
    assert twice.config["pitch_axis"]["frames"] == 2 * made.config["pitch_axis"]["frames"]
    assert twice.config["pitch_axis"]["also"] == [str(atlas.path)]
    assert not torch.equal(by_pitch.model.l4.weight, made.model.l4.weight)
    # a base that has a pitch axis already: its plane is refitted from where it is, the network
    # and the height kept
    tool.main(["--atlas", str(atlas.path), "--base", "base-pa", "--name", "base-pa-re", "--steps",
               "30", "--classes", "pitch"])
    with Atlas.open(atlas.path) as again:
        refit, _ = resolve_model(again, "base-pa-re")
    assert refit.config["pitch_axis"]["base"] == "base-pa"
    assert refit.config["pitch_axis"]["base_fit"] == made.config["pitch_axis"]
    assert "base_fit" not in made.config["pitch_axis"]
    _assert_network_kept(refit.model, base.model)
    assert refit.model.l4.weight.shape == (2, 256)
    assert not torch.equal(refit.model.l4.weight, made.model.l4.weight)
    np.testing.assert_array_equal(embed_features(refit.model, atlas.features(rec))[:, 2],
                                  traj[:, 2])
    with pytest.raises(SystemExit, match="--classes no_such_label"):
        tool.main(["--atlas", str(atlas.path), "--base", "base", "--name", "bad", "--steps", "3",
                   "--classes", "no_such_label"])


def test_the_pitch_axis_tool_refuses_an_atlas_of_other_features(atlas, rendered_library_master,
                                                                  tmp_path):
    """``--also`` an atlas whose CQT differs from the model's: refused, naming that atlas, before
    any fitting (its frames would be another transform's)."""
    import shutil

    lib = tmp_path / "other"
    lib.mkdir()
    for wav in sorted(Path(rendered_library_master).rglob("*.wav"))[:3]:
        shutil.copy(wav, lib / wav.name)
    index_library(lib, atlas_dir=tmp_path / "other-atlas", params=CQTParams(hop_length=400),
                  n_jobs=1)
    train(atlas, neighbourhood="instrument", settings=short(iterations=5), seed=0, name="base")
    tool = _pitch_axis_tool()
    with pytest.raises(SystemExit, match=r"--also .*other-atlas: .*hop_length"):
        tool.main(["--atlas", str(atlas.path), "--base", "base", "--name", "x", "--steps", "3",
                   "--also", str(tmp_path / "other-atlas")])
    assert not (atlas.path / "models" / "x").exists()
