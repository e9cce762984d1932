"""The whole evaluation (model beside baselines), the report, and their CLI, on a small render."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_in_process as _cli
from soundatlas.atlas import Atlas
from soundatlas.baselines import BASELINES, baseline_points, input_windows
from soundatlas.errors import ParameterError, SoundAtlasError
from soundatlas.evaluate import evaluate, frame_set, label_of, sample_points
from soundatlas.indexing import index_library
from soundatlas.report import write_report
from soundatlas.train import settings_for, train

BIN = Path(sys.executable).parent / "soundatlas"
# five instruments over one shared octave: every pitch exists in every class, so analogies
# (an instrument at two pitches, another at the first pitch) can be drawn
CLASSES = {"flute": (73, 60, 71), "trombone": (57, 60, 71), "violin": (40, 60, 71),
           "clarinet": (71, 60, 71), "nylon_guitar": (24, 60, 71)}


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A rendered 5-class library, indexed, with one small model trained and embedded."""
    from soundatlas.artifact import resolve_model
    from soundatlas.demo import render_library
    from soundatlas.embed import embed_atlas

    root = tmp_path_factory.mktemp("eval")
    render_library(root / "lib", classes=CLASSES, velocities=(80,), n_jobs=2)
    index_library(root / "lib", atlas_dir=root / "atlas", n_jobs=1)
    with Atlas.open(root / "atlas", write=True) as atlas:
        s = settings_for("fast", iterations=60, batch_size=16, valid_every=60, checkpoint_every=60)
        train(atlas, neighbourhood="instrument-pitch-2", settings=s, seed=0, name="m")
        artifact, reg = resolve_model(atlas, "m")
        embed_atlas(atlas, artifact, reg.id)
    return root / "atlas"


@pytest.fixture(scope="module")
def full(mapped):
    with Atlas.open(mapped) as atlas:
        return evaluate(atlas, ["m"], baselines=BASELINES, n_analogies=100)


def test_model_and_every_baseline_are_scored_on_the_same_frames(full):
    names = set(full["results"])
    assert names == {"m", *(f"baseline:{b}" for b in BASELINES)}
    n_test = full["protocol"]["n_frames"]["test"]
    assert n_test > 0
    for name, r in full["results"].items():
        assert "error" not in r, (name, r)
        for key in ("instrument", "pitch"):
            acc = r["accuracy"][key]
            assert 0 <= acc["test_accuracy"] <= 1 and acc["n_test"] == n_test
            m = np.array(r["confusion"][key]["matrix"])
            assert m.sum() == n_test  # every test frame predicted once
            # the confusion matrix agrees with the accuracy it came from
            assert np.trace(m) / m.sum() == pytest.approx(acc["test_accuracy"])
            ret = r["retrieval"][key]
            assert 0 <= ret["precision_at_k"] <= 1 and 0 <= ret["map_at_r"] <= 1
        assert r["analogies"]["n_triples"] > 0
        if name == "baseline:input":
            assert "manifold" not in r and r["dims"] == 1920  # the input against itself: n/a
        else:
            assert r["dims"] == 3
            assert set(r["manifold"]["trustworthiness"]) <= {5, 10, 20, 50}


def test_each_accuracy_has_an_interval_and_each_map_its_difference_from_the_model(full):
    assert "bootstrap over test files" in full["protocol"]["interval"]
    model = full["results"]["m"]["accuracy"]
    for name, r in full["results"].items():
        for key in ("instrument", "pitch"):
            acc = r["accuracy"][key]
            low, high = acc["test_interval"]
            assert 0 <= low <= acc["test_accuracy"] <= high <= 1 and low < high
            if name == "m":
                assert "against" not in acc
                continue
            against = acc["against"]
            assert against["model"] == "m"
            assert against["difference"] == pytest.approx(
                acc["test_accuracy"] - model[key]["test_accuracy"])
            d_low, d_high = against["interval"]
            assert d_low <= against["difference"] <= d_high
    # the largest difference from the model (here far more than a few files' worth) is one
    # the interval is sure of: it leaves zero out, on the difference's side
    against = max((r["accuracy"][key]["against"] for name, r in full["results"].items()
                   if name != "m" for key in ("instrument", "pitch")),
                  key=lambda a: abs(a["difference"]))
    assert abs(against["difference"]) > 0.2
    assert np.sign(against["interval"][0]) == np.sign(against["interval"][1]) \
        == np.sign(against["difference"])


def test_the_input_space_and_lda_separate_instruments_well_above_chance(full):
    chance = 1 / len(CLASSES)
    for name in ("baseline:input", "baseline:pca-lda"):
        assert full["results"][name]["accuracy"]["instrument"]["test_accuracy"] > 2 * chance
    assert full["results"]["baseline:pca-lda"]["lda_label"] == "instrument"


def test_baselines_are_fitted_on_training_frames_only(mapped):
    with Atlas.open(mapped) as atlas:
        fs = frame_set(atlas, seed=0)
        X = input_windows(atlas, fs, seed=0)
    train = fs.split == "train"
    y = np.array(["a", "b", "c", "d", "e"] * (len(X) // 5 + 1), dtype=object)[: len(X)]
    X2 = X.copy()
    X2[~train] = np.random.default_rng(1).normal(size=X2[~train].shape) * 100
    for name in ("pca", "pca-lda"):
        a = baseline_points(name, X, train, lda_labels=y)
        b = baseline_points(name, X2, train, lda_labels=y)
        np.testing.assert_allclose(a[train], b[train], rtol=1e-4, atol=1e-4)
        assert not np.allclose(a[~train], b[~train])


def test_input_windows_are_the_networks_windows(mapped):
    """Frame f's window is frames f-5 .. f+4 (zero-padded), noised like the network's input."""
    with Atlas.open(mapped) as atlas:
        fs = frame_set(atlas, seed=0)
        X = input_windows(atlas, fs, seed=0, noise=None).reshape(len(fs.frames), 10, -1)
        rec = atlas.samples([int(fs.sample_ids[0])])[0]
        F = atlas.features(rec)
    f = int(fs.frames[0])
    for j in range(10):
        t = f - 5 + j
        expected = F[t] if 0 <= t < len(F) else np.zeros(F.shape[1])
        np.testing.assert_allclose(X[0, j], expected, rtol=1e-6)


def test_sample_points_are_the_mean_of_their_frames():
    from soundatlas.evaluate import FrameSet

    fs = FrameSet(np.array([3, 3, 7]), np.array([0, 1, 0]), np.array(["test"] * 3))
    ids, pts = sample_points(np.array([[0.0, 2], [2, 4], [5, 5]]), fs)
    assert ids.tolist() == [3, 7]
    np.testing.assert_allclose(pts, [[1, 3], [5, 5]])


def test_bad_requests_are_refused_with_a_clear_message(mapped):
    with Atlas.open(mapped) as atlas:
        with pytest.raises(ParameterError, match="unknown baseline 'tsne'"):
            evaluate(atlas, ["m"], baselines=["tsne"])
        with pytest.raises(ParameterError, match="label 'timbre' is not in the atlas"):
            evaluate(atlas, ["m"], labels=["timbre"])
        with pytest.raises(ParameterError, match="label 'timbre' is not in the atlas"):
            evaluate(atlas, ["m"], labels=["instrument+timbre"])
        with pytest.raises(ParameterError, match="nothing to evaluate"):
            evaluate(atlas, [])
        with pytest.raises(SoundAtlasError, match="no model named 'nope'"):
            evaluate(atlas, ["nope"])
    with pytest.raises(ParameterError, match="more than 3 classes"):
        baseline_points("pca-lda", np.random.default_rng(0).normal(size=(40, 6)),
                        np.ones(40, bool), lda_labels=["a", "b"] * 20)


def test_report_is_written_and_references_only_its_own_files(mapped, full, tmp_path):
    out = tmp_path / "report"
    stages = []
    with Atlas.open(mapped) as atlas:
        page = write_report(atlas, out, models=["m"], evaluation=full,
                            progress=lambda d, t, s: stages.append((d, t)))
    assert stages[-1][0] == stages[-1][1]  # progress reached the end
    text = page.read_text()
    refs = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", text)
    assert refs, "the page shows figures"
    for ref in refs:
        assert not re.match(r"^[a-z]+:|^//|^/", ref), f"{ref} is not a local relative file"
        assert (out / ref).is_file(), f"{ref} is referenced but was not written"
    pngs = sorted(p.name for p in (out / "fig").glob("*.png"))
    assert {"m-map.png", "m-per-class.png", "m-confusion.png", "m-traj.png"} <= set(pngs)
    for p in (out / "fig").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "baseline:pca-lda" in text and "Analogies" in text
    assert json.loads((out / "evaluation.json").read_text())["results"].keys() == full["results"].keys()
    # what the printed table says beside the scores, the page says too (chance, first of all)
    from soundatlas.scoretable import score_notes

    notes = score_notes(full)
    assert notes and any("most common class's share" in n for n in notes)
    for note in notes:
        assert html.escape(note) in text, note
    # the columns the printed table has: P@10 sim, and each map's paired difference
    header = text[text.index("<table"):text.index("</tr>", text.index("<table"))]
    assert "P@10 sim" in header and " vs m" in header, header


def test_evaluate_and_report_from_the_command_line(mapped, tmp_path, capsys):
    proc = subprocess.run([str(BIN), "evaluate", "--atlas", str(mapped), "-m", "m",
                           "--baselines", "pca", "--analogies", "50", "--json", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["results"]) == {"m", "baseline:pca"}
    text = _cli(capsys, "evaluate", "--atlas", mapped, "-m", "m", "--baselines", "none", "-q")
    assert text.returncode == 0 and text.stdout.splitlines()[1].startswith("m ")
    bad = _cli(capsys, "evaluate", "--atlas", mapped, "-m", "m", "--baselines", "pca,tsne")
    assert bad.returncode == 2 and "unknown baseline 'tsne'" in bad.stderr
    assert "Traceback" not in bad.stderr
    rep = subprocess.run([str(BIN), "report", "--atlas", str(mapped), "-o", str(tmp_path / "r"),
                          "--baselines", "pca", "--analogies", "20", "-q"],
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "r" / "index.html").is_file()
    failed = _cli(capsys, "report", "--atlas", mapped, "-o", tmp_path / "f", "--baselines",
                  "pca,tsne", "-q")
    assert failed.returncode == 2 and not (tmp_path / "f" / "fig").exists()  # nothing left
    # an output that cannot be a folder is refused before the work (a traceback after it)
    (tmp_path / "afile").write_text("x")
    for output, says in ((tmp_path / "afile", "exists and is not a folder"),
                         (tmp_path / "afile" / "sub", "the folder cannot be made")):
        bad = _cli(capsys, "report", "--atlas", mapped, "-o", output, "-q")
        assert bad.returncode == 2 and says in bad.stderr, bad
    gone = _cli(capsys, "report", "--atlas", mapped, "-o", tmp_path / "g", "-m", "nope",
                "-q")
    assert gone.returncode == 1 and not (tmp_path / "g").exists()  # made, then taken back
    # the atlas itself as the reference: its training files would be tested (all near 1.000)
    same = _cli(capsys, "evaluate", "--atlas", mapped, "-m", "m", "--reference", mapped)
    assert same.returncode == 2 and "is the atlas evaluated" in same.stderr, same
    twice = _cli(capsys, "evaluate", "--atlas", mapped, "-m", "m", "--baselines", "none",
                 "--labels", "pitch", "pitch", "--analogies", "0", "--json", "-q")
    assert json.loads(twice.stdout)["protocol"]["labels"] == ["pitch"]


def test_a_pair_of_labels_is_scored_as_one(mapped):
    """instrument+pitch: the class is the pair of values; scored exactly as a label made by hand
    from the two would be."""
    from soundatlas.evaluate import frame_set, label_of, model_frame_points, score_points

    with Atlas.open(mapped) as atlas:
        joint = label_of(atlas, "instrument+pitch")
        inst, pitch = atlas.labels("instrument"), atlas.labels("pitch")
        by_hand = {sid: f"{inst[sid]}/{pitch[sid]}" for sid in inst if sid in pitch}
        assert len(set(joint.values())) == len(set(by_hand.values())) > len(set(inst.values()))
        r = evaluate(atlas, ["m"], labels=["instrument", "instrument+pitch"], n_analogies=0)
        fs = frame_set(atlas, n_per_file=8, seed=0)
        pts = model_frame_points(atlas, atlas.model("m").id, fs)
    want = score_points(pts, fs, {"pair": by_hand}, n_analogies=0, seed=0)
    got = r["results"]["m"]["accuracy"]["instrument+pitch"]
    assert got["test_accuracy"] == want["accuracy"]["pair"]["test_accuracy"] > 0
    assert got["k"] == want["accuracy"]["pair"]["k"]
    assert r["protocol"]["labels"] == ["instrument", "instrument+pitch"]


# -- a library without instrument or pitch: drum one-shots labelled by folder and drum_class ---


def _drum_library(root: Path, n: int = 8) -> Path:
    """Kicks (sine sweeps), snares (tone and noise) and hats (bright noise), generated; a
    manifest with drum_class and a numeric 'tuning' whose values sort differently as text."""
    import soundfile as sf

    sr = 44100
    rng = np.random.default_rng(0)
    rows = ["path,drum_class,tuning"]
    for cls in ("kick", "snare", "hat"):
        for i in range(n):
            t = np.arange(int((0.25 + 0.02 * i) * sr)) / sr
            if cls == "kick":
                y = np.sin(2 * np.pi * (50 + 4 * i + 150 * np.exp(-t * 30)) * t) * np.exp(-t * 8)
            elif cls == "snare":
                y = (0.5 * np.sin(2 * np.pi * (180 + 5 * i) * t)
                     + rng.standard_normal(len(t))) * np.exp(-t * 18)
            else:
                y = np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t * (40 + i))
            rel = f"{cls}/{cls}_{i}.wav"
            (root / cls).mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, (0.3 * y / np.abs(y).max()).astype(np.float32), sr, subtype="PCM_16")
            rows.append(f"{rel},{cls},{(9, 10, 100)[i % 3]}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def drums(tmp_path_factory) -> Path:
    lib = _drum_library(tmp_path_factory.mktemp("drums") / "lib")
    run = subprocess.run([str(BIN), "map", str(lib), "-q", "--jobs", "1"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    return lib / ".soundatlas"


def test_evaluate_and_report_default_to_the_labels_the_atlas_has(drums, tmp_path, capsys):
    from soundatlas.evaluate import default_labels

    with Atlas.open(drums) as atlas:
        assert default_labels(atlas) == ["folder"]  # no instrument, no pitch
    run = _cli(capsys, "evaluate", "--atlas", drums, "-m", "default", "--baselines", "pca",
               "--json", "-q")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["protocol"]["labels"] == ["folder"]
    assert set(result["results"]["default"]["accuracy"]) == {"folder"}

    out = tmp_path / "report"
    run = _cli(capsys, "report", "--atlas", drums, "--baselines", "pca", "--analogies", "0",
               "-o", out, "-q")
    assert run.returncode == 0, run.stderr
    assert "folder acc." in (out / "index.html").read_text()
    assert (out / "fig" / "default-map.png").stat().st_size > 0
    assert (out / "fig" / "default-traj.png").stat().st_size > 0


def test_report_takes_labels_and_the_table_names_them_in_full(drums, tmp_path, capsys):
    out = tmp_path / "report"
    run = _cli(capsys, "report", "--atlas", drums, "--labels", "drum_class", "tuning",
               "--baselines", "none", "--analogies", "0", "-o", out, "-q")
    assert run.returncode == 0, run.stderr
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["protocol"]["labels"] == ["drum_class", "tuning"]
    page = (out / "index.html").read_text()
    assert "drum_class acc." in page
    low, high = ev["results"]["default"]["accuracy"]["drum_class"]["test_interval"]
    assert "<th>drum_class acc. 95 %</th>" in page and f"<td>{low:.3f}-{high:.3f}</td>" in page

    run = _cli(capsys, "evaluate", "--atlas", drums, "-m", "default", "--labels", "drum_class",
               "--baselines", "none", "-q")
    assert run.returncode == 0, run.stderr
    head = run.stdout.splitlines()[0].split()
    assert {"drum_class", "acc", "P@10", "MAP@R"} <= set(head), head
    assert "drum_" not in head

    missing = _cli(capsys, "report", "--atlas", drums, "--labels", "instrument",
                   "-o", tmp_path / "r2", "-q")
    assert missing.returncode == 1
    assert "label 'instrument' is not in the atlas" in missing.stderr


def test_info_sorts_numeric_label_values_as_numbers(drums):
    run = subprocess.run([str(BIN), "info", "--atlas", str(drums), "--json"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    labels = json.loads(run.stdout)["labels"]
    assert list(labels["tuning"]) == ["9", "10", "100"]
    assert list(labels["drum_class"]) == ["hat", "kick", "snare"]
    text = subprocess.run([str(BIN), "info", "--atlas", str(drums)], capture_output=True,
                          text=True).stdout
    assert "label tuning: 3 values: 9 (9), 10 (9), 100 (6)" in text


# -- the cross-bank protocol: k-NN fitted on another atlas, every frame here a test frame -------


HELD_CLASSES = {k: v for k, v in CLASSES.items() if k != "nylon_guitar"}


@pytest.fixture(scope="module")
def other_bank(mapped, tmp_path_factory):
    """Four of the five classes played louder (velocity 120 against the reference's 80),
    indexed into an atlas of its own and embedded with the reference atlas's model 'm'."""
    from soundatlas.artifact import resolve_model
    from soundatlas.demo import render_library
    from soundatlas.embed import embed_atlas, ensure_registered

    root = tmp_path_factory.mktemp("other-bank")
    render_library(root / "lib", classes=HELD_CLASSES, velocities=(120,), n_jobs=2)
    index_library(root / "lib", atlas_dir=root / "atlas", n_jobs=1)
    with Atlas.open(mapped) as ref:
        model_dir = ref.path / ref.model("m").dir
    with Atlas.open(root / "atlas", write=True) as atlas:
        artifact, registration = resolve_model(atlas, str(model_dir))
        embed_atlas(atlas, artifact, ensure_registered(atlas, artifact, registration))
    return root / "atlas"


def test_cross_bank_fits_on_the_reference_and_tests_every_frame_of_this_atlas(mapped, other_bank):
    from sklearn.neighbors import KNeighborsClassifier

    from soundatlas.evaluate import label_of, model_frame_points

    with Atlas.open(mapped) as ref, Atlas.open(other_bank) as atlas:
        r = evaluate(atlas, ["m"], baselines=["pca"], reference=ref, labels=["instrument"],
                     n_analogies=0)
        p = r["protocol"]
        assert p["protocol"] == "cross-bank" and p["reference"]["atlas"] == str(ref.path)
        # traceable: the atlas scored, the version, and which model "m" was
        from soundatlas import __version__
        from soundatlas.artifact import weights_digest

        assert (p["atlas"], p["soundatlas"]) == (str(atlas.path), __version__)
        who = r["results"]["m"]["model"]
        assert who["weights_sha256"] == weights_digest(ref, ref.model("m"))
        assert (who["neighbourhood"], who["seed"], who["iterations"]) == (
            "instrument-pitch-2", 0, 60)
        held = frame_set(atlas)
        within = frame_set(ref)
        assert p["n_frames"] == {"train": int(np.sum(within.split == "train")),  # all, labelled or not
                                 "valid": int(np.sum(within.split == "valid")),
                                 "test": len(held.sample_ids)}
        # samples: this atlas's, and apart from them the reference's that the k-NN may use
        assert p["n_samples"] == len(np.unique(held.sample_ids))
        fitted_on = within.sample_ids[within.split != "test"]
        assert p["reference"]["n_samples"] == len(np.unique(fitted_on))
        acc = r["results"]["m"]["accuracy"]["instrument"]
        assert acc["n_test"] == len(held.sample_ids)
        # the same number by hand: k-NN on the reference's training frames, the chosen k
        # the k-NN chooses among the classes this library has: nylon_guitar is never predicted
        assert r["results"]["m"]["confusion"]["instrument"]["labels"] == sorted(HELD_CLASSES)
        names = np.array([label_of(ref, "instrument")[int(s)] for s in within.sample_ids])
        train = (within.split == "train") & np.isin(names, list(HELD_CLASSES))
        X = model_frame_points(ref, ref.model("m").id, within)[train]
        y = names[train]
        clf = KNeighborsClassifier(n_neighbors=acc["k"]).fit(X, y)
        Xh = model_frame_points(atlas, atlas.model("m").id, held)
        yh = np.array([label_of(atlas, "instrument")[int(s)] for s in held.sample_ids])
        by_hand = np.mean(clf.predict(Xh) == yh)
        assert acc["test_accuracy"] == pytest.approx(by_hand, abs=0.02)  # vote ties may differ
        assert acc["test_accuracy"] > 2 / len(HELD_CLASSES)  # louder notes still find their class
        assert "error" not in r["results"]["baseline:pca"]
        # what was left out of the k-NN, counted and said (the reference's non-test frames)
        n_nylon = int(np.sum((names == "nylon_guitar") & (within.split != "test")))
        assert p["reference"]["classes"] == "held"
        assert p["reference"]["left_out"] == {"instrument": {"classes": 1, "frames": n_nylon}}
        from soundatlas.scoretable import format_scores

        assert (f"left out of it, the reference's 'instrument': 1 classes ({n_nylon} frames)"
                in format_scores(r))


def test_cross_bank_retrieval_finds_the_reference_sounds_alone(mapped, other_bank):
    """Cross-bank P@10 asks where a sound lands among another library's sounds: its queries
    (every sample of this atlas) search the reference's fitted samples, never this atlas's own
    (which searched beside them, made most of each query's neighbours)."""
    from sklearn.neighbors import NearestNeighbors

    from soundatlas.evaluate import FrameSet, model_frame_points

    with Atlas.open(mapped) as ref, Atlas.open(other_bank) as atlas:
        r = evaluate(atlas, ["m"], reference=ref, labels=["instrument"], n_analogies=0,
                     reference_classes="all")
        got = r["results"]["m"]["retrieval"]["instrument"]
        held, within = frame_set(atlas), frame_set(ref)
        fitted = within.split != "test"
        ref_ids, ref_points = sample_points(
            model_frame_points(ref, ref.model("m").id, within)[fitted],
            FrameSet(within.sample_ids[fitted], within.frames[fitted], within.split[fitted]))
        ids, points = sample_points(model_frame_points(atlas, atlas.model("m").id, held), held)
        ref_names = np.array([label_of(ref, "instrument")[int(i)] for i in ref_ids])
        names = np.array([label_of(atlas, "instrument")[int(i)] for i in ids])
    _, nn = NearestNeighbors(n_neighbors=10).fit(ref_points).kneighbors(points)
    by_hand = float(np.mean(ref_names[nn] == names[:, None]))
    assert got["n_queries"] == len(ids)
    assert got["precision_at_k"] == pytest.approx(by_hand, abs=1e-9)


def test_cross_bank_with_all_the_reference_classes_may_name_one_this_atlas_lacks(mapped,
                                                                                 other_bank):
    """--reference-classes all: the k-NN is fitted on every class of the reference, nylon
    guitar included, so the held bank's sounds may be taken for it; nothing is left out."""
    from soundatlas.scoretable import format_scores

    with Atlas.open(mapped) as ref, Atlas.open(other_bank) as atlas:
        held = evaluate(atlas, ["m"], reference=ref, labels=["instrument"], n_analogies=0)
        every = evaluate(atlas, ["m"], reference=ref, labels=["instrument"], n_analogies=0,
                         reference_classes="all")
        with pytest.raises(ParameterError, match="reference_classes='some' must be one of"):
            evaluate(atlas, ["m"], reference=ref, labels=["instrument"], n_analogies=0,
                     reference_classes="some")
    p = every["protocol"]["reference"]
    assert p["classes"] == "all" and p["left_out"] == {}
    assert "left out of it" not in format_scores(every)
    fitted = held["results"]["m"]["accuracy"]["instrument"]["n_train"]
    assert every["results"]["m"]["accuracy"]["instrument"]["n_train"] > fitted
    # the confusion's columns: every class predicted or true; nylon guitar can be predicted now
    assert "nylon_guitar" not in held["results"]["m"]["confusion"]["instrument"]["labels"]


def test_cross_bank_names_the_classes_the_reference_lacks(mapped, other_bank):
    """The demo atlas scored against the louder bank, which has no nylon guitar: its frames
    can never be named right, and the result and the printed table say so with their count."""
    from soundatlas.evaluate import label_of
    from soundatlas.scoretable import format_scores

    with Atlas.open(other_bank) as ref, Atlas.open(mapped) as atlas:
        r = evaluate(atlas, ["m"], reference=ref, labels=["instrument", "pitch"],
                     n_analogies=0)
        names = label_of(atlas, "instrument")
        n_nylon = sum(names[int(s)] == "nylon_guitar" for s in frame_set(atlas).sample_ids)
    unmatched = r["protocol"]["unmatched_classes"]
    assert n_nylon > 0 and unmatched["instrument"] == {"nylon_guitar": n_nylon}
    conf = r["results"]["m"]["confusion"]["instrument"]
    row = conf["labels"].index("nylon_guitar")
    assert conf["matrix"][row][row] == 0  # never named: the reason for the note
    text = format_scores(r)
    assert f"{n_nylon} test frames have a 'instrument' that no training frame of the " \
        "reference has" in text and f"nylon_guitar ({n_nylon})" in text
    with Atlas.open(other_bank) as ref:  # a pitch is named only when no fitted frame has it
        fs = frame_set(ref)
        pitches = label_of(ref, "pitch")
        fitted = {pitches[int(s)] for s in fs.sample_ids[fs.split == "train"]}
    assert not set(unmatched["pitch"]) & fitted


def test_labels_suggested_from_the_map_are_no_truth_to_score_it_by(mapped, tmp_path):
    """`suggest --apply` stored 'instrument:oboe' on every test sample, not yet accepted: the
    scores read the index's labels alone. One the user tags (or accepts) is the truth."""
    import shutil

    copy = tmp_path / "atlas"
    shutil.copytree(mapped, copy)
    with Atlas.open(copy, write=True) as atlas:
        fs = frame_set(atlas)
        tested = sorted({int(s) for s in fs.sample_ids[fs.split == "test"]})
        before = evaluate(atlas, ["m"], labels=["instrument"], n_analogies=0)
        atlas.tag(tested, add=["instrument:oboe"], suggested=True, confidence=0.9)
        after = evaluate(atlas, ["m"], labels=["instrument"], n_analogies=0)
        assert label_of(atlas, "instrument")[tested[0]] == "oboe"  # the page shows it
        atlas.tag(tested[:1], add=["instrument:oboe"])  # accepted: the user's own now
        accepted = evaluate(atlas, ["m"], labels=["instrument"], n_analogies=0)
    assert after["results"]["m"]["accuracy"] == before["results"]["m"]["accuracy"]
    assert after["results"]["m"]["confusion"] == before["results"]["m"]["confusion"]
    assert "oboe" in accepted["results"]["m"]["confusion"]["instrument"]["labels"]


def test_the_input_baseline_is_also_searched_pooled_as_the_similarity_vectors_are(mapped):
    """The input baseline's "P@10 sim": every sample's energy-weighted mean log-CQT frame over
    all its frames (as a model's similarity vector pools its activations), beside its mean of 8
    evaluated windows; the same queries and labels as the model's, computed here by hand."""
    from soundatlas import metrics
    from soundatlas.frames import frame_energy
    from soundatlas.scoretable import format_scores

    with Atlas.open(mapped) as atlas:
        r = evaluate(atlas, ["m"], baselines=["input"], labels=["instrument"], n_analogies=0)
        fs = frame_set(atlas)
        ids = np.unique(fs.sample_ids)
        pooled = []
        for rec in atlas.samples(ids.tolist()):
            frames = atlas.features(rec).astype(np.float64)
            w = frame_energy(frames)
            pooled.append((w[:, None] * frames).sum(0) / w.sum())
        names = label_of(atlas, "instrument")
    split = dict(zip(fs.sample_ids.tolist(), fs.split.tolist()))
    by_hand = metrics.retrieval(np.array(pooled), [names.get(int(i)) for i in ids],
                                queries=np.array([split[int(i)] == "test" for i in ids]))
    got = r["results"]["baseline:input"]["retrieval_similarity"]["instrument"]
    model = r["results"]["m"]["retrieval_similarity"]["instrument"]
    assert got["n_queries"] == model["n_queries"] == by_hand["n_queries"]
    assert got["precision_at_k"] == pytest.approx(by_hand["precision_at_k"], abs=1e-6)
    assert "energy-weighted mean log-CQT frame" in (
        r["results"]["baseline:input"]["retrieval_spaces"]["retrieval_similarity"])
    row = next(line for line in format_scores(r).splitlines() if "input" in line)
    assert f"{got['precision_at_k']:.3f}" in row


def test_retrieval_does_not_count_a_querys_copy_at_another_path(mapped, tmp_path):
    """Test files copied into another folder: a copy is the same sound (same content, same
    split), found at distance 0. P@10 leaves it out of what its original may find, and the
    other way round: evaluate's figure is metrics.retrieval's with the content hashes as
    groups, and not the one without them (by folder, where a copy, in another folder, was a
    miss found first)."""
    from conftest import copied_with_copies
    from soundatlas import metrics
    from soundatlas.evaluate import model_frame_points

    with Atlas.open(mapped) as atlas:
        fs = frame_set(atlas)
        tested = sorted({int(s) for s in fs.sample_ids[fs.split == "test"]})
        paths = atlas.paths(tested[:6])
    with Atlas.open(copied_with_copies(mapped, tmp_path, paths.values())) as atlas:
        r = evaluate(atlas, ["m"], labels=["folder"], n_analogies=0)
        fs = frame_set(atlas)
        ids, points = sample_points(model_frame_points(atlas, atlas.model("m").id, fs), fs)
        names = label_of(atlas, "folder")
        hashes = {sid: h for sid, h, _p in atlas.iter_ids_hashes()}
    split = dict(zip(fs.sample_ids.tolist(), fs.split.tolist()))
    y = [names.get(int(i)) for i in ids]
    queries = np.array([split[int(i)] == "test" for i in ids])
    groups = [hashes[int(i)] for i in ids]
    assert len(set(groups)) == len(groups) - 6  # the copies, analysed into the test split
    told = metrics.retrieval(points, y, queries=queries, groups=groups)
    blind = metrics.retrieval(points, y, queries=queries)
    got = r["results"]["m"]["retrieval"]["folder"]
    assert got["precision_at_k"] == pytest.approx(told["precision_at_k"])
    assert got["precision_at_k"] > blind["precision_at_k"]  # no copy found first


def test_within_set_names_a_class_only_test_files_have(mapped, tmp_path):
    """Two test samples relabelled as a class no other sample has: the k-NN cannot name it,
    and evaluate says which class and how many test frames (within-set as across banks). A
    label of one class scores 1.000 on any map: evaluate says so, and gives each label's
    chance (the most common class's share of the test frames)."""
    import collections
    import shutil

    from soundatlas.scoretable import format_scores

    copy = tmp_path / "atlas"
    shutil.copytree(mapped, copy)
    with Atlas.open(copy, write=True) as atlas:
        fs = frame_set(atlas)
        tested = sorted({int(s) for s in fs.sample_ids[fs.split == "test"]})[:2]
        labels = atlas.labels_of(atlas.sample_ids().tolist())
        for sid in tested:
            labels[sid] = {**labels[sid], "instrument": "oboe"}
        for sid in labels:
            labels[sid] = {**labels[sid], "bank": "one"}
        atlas.replace_labels(labels)
    with Atlas.open(copy) as atlas:
        r = evaluate(atlas, ["m"], labels=["instrument", "bank"], n_analogies=0)
        fs = frame_set(atlas)
        n_oboe = int(np.isin(fs.sample_ids, tested).sum())
        names = label_of(atlas, "instrument")
        counts = collections.Counter(names[int(s)] for s in fs.sample_ids[fs.split == "test"])
    assert r["protocol"]["unmatched_classes"] == {"instrument": {"oboe": n_oboe}, "bank": {}}
    text = format_scores(r)
    assert (f"{n_oboe} test frames have a 'instrument' that no training frame has, so the "
            f"k-NN cannot name it: oboe ({n_oboe})") in text
    chance = r["protocol"]["test_classes"]
    top = max(counts.values()) / sum(counts.values())
    assert chance["instrument"]["n_classes"] == len(counts) > 1
    assert chance["instrument"]["majority_share"] == pytest.approx(top)
    assert f"naming every frame by it scores): instrument {top:.3f}" in text
    assert chance["bank"] == {"n_classes": 1, "majority": "one", "majority_share": 1.0}
    assert r["results"]["m"]["accuracy"]["bank"]["test_accuracy"] == 1.0
    assert "'bank' has one class among the test frames (one): every map scores 1.000" in text
    r["protocol"]["unmatched_classes"]["bank"] = {"one": 3}  # a class no training frame has
    assert "every map scores 1.000" not in format_scores(r)  # it scores 0: not said
    # one test class, but the training frames have others the k-NN may name (the review: the
    # note said 1.000 above a table of 0.375)
    r["protocol"]["unmatched_classes"]["bank"] = {}
    r["results"]["m"]["accuracy"]["bank"]["test_accuracy"] = 0.375
    text = format_scores(r)
    assert "every map scores 1.000" not in text
    assert ("'bank' has one class among the test frames (one): its accuracy says how often the "
            "k-NN names one, not how well the classes are told apart") in text


def test_cross_bank_refuses_a_model_that_differs_or_is_missing(mapped, other_bank, tmp_path):
    import shutil

    copy = tmp_path / "ref"
    shutil.copytree(mapped, copy)
    with Atlas.open(copy, write=True) as ref:
        weights = copy / ref.model("m").dir / "weights.npz"
        data = dict(np.load(weights))
        first = sorted(data)[0]
        data[first] = data[first] + 1
        np.savez(weights, **data)
    with Atlas.open(copy) as ref, Atlas.open(other_bank) as atlas:
        with pytest.raises(ParameterError, match=r"model 'm' differs between .*\(other "
                                                 r"weights\)"):
            evaluate(atlas, ["m"], reference=ref, labels=["instrument"], n_analogies=0)
        with pytest.raises(ParameterError, match="label 'timbre' is not in the atlas"):
            evaluate(atlas, ["m"], reference=ref, labels=["timbre"], n_analogies=0)
    with Atlas.open(copy, write=True) as ref:
        ref.remove_model("m")
    with Atlas.open(copy) as ref, Atlas.open(other_bank) as atlas:
        with pytest.raises(Exception, match="no model named 'm'") as missing:
            evaluate(atlas, ["m"], reference=ref, labels=["instrument"], n_analogies=0)
        folder = (atlas.path / atlas.model("m").dir).resolve()
    assert f"`soundatlas embed --atlas {copy} --model {folder}` embeds it" in str(missing.value)


def test_evaluate_reference_on_the_command_line(mapped, other_bank):
    run = subprocess.run([str(BIN), "evaluate", "--atlas", str(other_bank), "--reference",
                          str(mapped), "-m", "m", "--labels", "instrument", "--baselines",
                          "pca", "--analogies", "0", "--reference-classes", "all", "--json",
                          "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["protocol"]["protocol"] == "cross-bank"
    assert result["protocol"]["reference"]["classes"] == "all"
    assert set(result["results"]) == {"m", "baseline:pca"}
    bad = subprocess.run([str(BIN), "evaluate", "--atlas", str(other_bank), "--reference",
                          str(other_bank / "nowhere"), "-m", "m", "-q"], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "no atlas at" in bad.stderr
    alone = subprocess.run([str(BIN), "evaluate", "--atlas", str(other_bank), "-m", "m",
                            "--reference-classes", "all", "-q"], capture_output=True, text=True)
    assert alone.returncode == 2 and "give --reference too" in alone.stderr  # not ignored


# -- extension points: a baseline is one registered class; one score table, three renderings ---


def test_a_baseline_registered_from_outside_is_scored_like_the_others(mapped, monkeypatch):
    """One class and its registration make a baseline that evaluate scores (and refuses by
    name once it is gone)."""
    from soundatlas import baselines
    from soundatlas.evaluate import label_of, score_points

    monkeypatch.setattr(baselines, "BASELINES", dict(baselines.BASELINES))

    @baselines.register_baseline
    class FirstBins(baselines.Baseline):
        """The first ``dims`` values of each window, fitted on nothing."""

        name = "first-bins"

        def fit(self, X, y=None):
            self.fitted_on_ = len(X)
            return self

        def transform(self, X):
            return X[:, :self.dims]

    @baselines.register_baseline
    class Refuses(baselines.Baseline):
        name = "refuses"

        def fit(self, X, y=None):
            raise ParameterError("baseline 'refuses' needs what it lacks")

    assert list(baselines.BASELINES)[-2:] == ["first-bins", "refuses"]
    with Atlas.open(mapped) as atlas:
        r = evaluate(atlas, baselines=["first-bins", "refuses"], labels=["instrument"],
                     n_analogies=0)
        fs = frame_set(atlas, seed=0)
        X = input_windows(atlas, fs, seed=0)
        labels = {"instrument": label_of(atlas, "instrument")}
    # a baseline that cannot be fitted is one row with its reason, not a failed run
    assert r["results"]["baseline:refuses"] == {"error": "baseline 'refuses' needs what it lacks"}
    got = r["results"]["baseline:first-bins"]
    assert "lda_label" not in got
    want = score_points(X[:, :3], fs, labels, X_input=X, n_analogies=0, seed=0)
    assert got["accuracy"] == want["accuracy"] and got["dims"] == 3
    b = baselines.make_baseline("first-bins", dims=2)
    assert b.points(X, fs.split == "train").shape == (len(X), 2)
    assert b.fitted_on_ == int(np.sum(fs.split == "train"))
    with pytest.raises(ParameterError, match="is registered already"):
        baselines.register_baseline(type("Other", (baselines.Baseline,), {"name": "pca"}))
    monkeypatch.undo()
    with Atlas.open(mapped) as atlas, pytest.raises(ParameterError,
                                                    match="unknown baseline 'first-bins'"):
        evaluate(atlas, baselines=["first-bins"])


def _toy_scores() -> dict:
    ok = {"accuracy": {"instrument": {"test_accuracy": 0.5}},
          "retrieval": {"instrument": {"precision_at_k": 0.25, "map_at_r": 0.125}},
          "retrieval_similarity": {"error": "no vectors"},
          "manifold": {"trustworthiness": {10: 0.9}, "continuity": {10: 0.8}},
          "analogies": {"instrument": {"win_rate": 0.75, "control_win_rate": 0.5},
                        "pitch": {"win_rate": 0.0, "control_win_rate": 1.0}}}
    return {"protocol": {"labels": ["instrument"], "n_frames": {"train": 6, "valid": 2,
                                                                 "test": 4},
                         "n_samples": 3, "frames_per_file": 8, "ks": [1]},
            "results": {"m": ok, "baseline:pca": {"error": "too <few> frames"}}}


def test_one_score_table_written_as_text_html_and_markdown():
    from soundatlas import scoretable as st

    ev = _toy_scores()
    columns = [st.Column("acc", st.accuracy("instrument")),
               st.Column("P@10 sim", st.precision_similarity("instrument")),
               st.Column("trust", st.trustworthiness()),
               st.Column("analogy", st.analogy_win("instrument", control=True))]
    text = st.text_table(ev["results"], columns)
    assert text[0].split() == ["map", "acc", "P@10", "sim", "trust", "analogy"]
    assert text[1].split() == ["m", "0.500", "-", "0.900", "0.750", "(0.500)"]
    assert text[2].split() == ["baseline:pca", "error:", "too", "<few>", "frames"]
    assert text[0].index("trust") + len("trust") == text[1].index("0.900") + len("0.900")
    page = st.html_table(ev["results"], columns)
    assert "<td>0.500</td><td>–</td><td>0.900</td><td>0.750 (0.500)</td>" in page
    assert '<tr class="baseline"><td>baseline:pca</td><td colspan=4>too &lt;few&gt; frames' in page
    md = st.markdown_table(ev["results"], columns)
    assert md[:3] == ["| map | acc | P@10 sim | trust | analogy |", "|---|---:|---:|---:|---:|",
                      "| m | 0.500 | – | 0.900 | 0.750 (0.500) |"]
    assert md[3] == "| baseline:pca | error: too <few> frames | | | |"
    # read back from JSON (integer keys become text) the table is the same
    assert st.text_table(json.loads(json.dumps(ev))["results"], columns) == text


def test_the_evaluate_commands_table_names_every_column_and_the_protocol():
    from soundatlas.scoretable import format_scores

    ev = _toy_scores()
    lines = format_scores(ev).splitlines()
    assert lines[0].split() == ["map", "instrument", "acc", "instrument", "95%", "instrument",
                                "P@10", "instrument", "P@10", "sim", "instrument", "MAP@R",
                                "trust@10", "cont@10", "analogy", "i/p"]
    assert lines[1].split() == ["m", "0.500", "-", "0.250", "-", "0.125", "0.900", "0.800",
                                "0.750/0.000"]
    assert lines[2].startswith("baseline:pca  ") and "error: too <few> frames" in lines[2]
    assert lines[3].startswith("(4 test frames of 3 samples, 8 per file; 95%: ")
    assert "vs " not in lines[3]
    ev["protocol"].update(protocol="cross-bank", reference={"atlas": "/ref"})
    assert format_scores(ev).splitlines()[4].startswith(
        "cross-bank: k-NN fitted on 6 training frames of /ref (k chosen on 2 of")
    # with an interval, and a second map compared with the first model on the same frames
    ev["results"]["m"]["accuracy"]["instrument"]["test_interval"] = [0.25, 0.75]
    ev["results"]["m2"] = {"accuracy": {"instrument": {
        "test_accuracy": 0.625, "test_interval": [0.375, 0.875],
        "against": {"model": "m", "difference": 0.125, "interval": [-0.125, 0.25]}}}}
    lines = format_scores(ev).splitlines()
    assert lines[0].split()[3:7] == ["instrument", "95%", "instrument", "vs"]
    assert lines[0].split()[7] == "m"
    assert lines[1].split()[:4] == ["m", "0.500", "0.250-0.750", "-"]
    assert lines[3].split()[:6] == ["m2", "0.625", "0.375-0.875", "+0.125", "(-0.125,",
                                    "+0.250)"]
    assert "vs m: the accuracy minus m's on the same frames" in lines[4]


def test_figures_that_could_not_be_scored_are_named_beneath_the_table():
    from soundatlas import scoretable as st

    ev = _toy_scores()
    ev["results"]["m"]["retrieval"]["pitch"] = {"error": "k=10 must be at most 4"}
    ev["results"]["m2"] = {"accuracy": {"instrument": {"test_accuracy": 0.5}},
                           "retrieval": {"pitch": {"error": "k=10 must be at most 4"}},
                           "manifold": {"error": "0 test frames: ... need at least 2"}}
    assert st.score_errors(ev["results"]) == [
        "retrieval of 'pitch' (m, m2): k=10 must be at most 4",  # one line for both maps
        "retrieval in the similarity space (m): no vectors",
        "trustworthiness and continuity (m2): 0 test frames: ... need at least 2"]
    lines = st.format_scores(ev).splitlines()
    assert lines[-3:] == [f"not scored: {line}" for line in st.score_errors(ev["results"])]
    assert not any("too <few>" in line for line in lines[-3:])  # the table's row says that


@pytest.fixture(scope="module", params=[1, 2, 5])
def tiny(request, tmp_path_factory) -> tuple[int, Path]:
    """An atlas of 1, 2 or 5 tones (one folder, or two of one tone each) embedded with the
    shipped model: too small for precision at 10, and the first two have no test frame."""
    from conftest import make_tone_library
    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas, ensure_registered
    from soundatlas.indexing import cqt_for_model

    n = request.param
    lib = make_tone_library(tmp_path_factory.mktemp(f"tiny{n}") / "lib",
                            n_per_folder=1 if n == 2 else n,
                            folders=("low", "high") if n == 2 else ("low",))
    index_library(lib, n_jobs=1, params=cqt_for_model(lib, None, "default"))
    with Atlas.open(lib / ".soundatlas", write=True) as atlas:
        assert atlas.n_samples() == n
        artifact, registration = resolve_model(atlas, "default")
        embed_atlas(atlas, artifact, ensure_registered(atlas, artifact, registration))
    return n, lib / ".soundatlas"


def test_a_tiny_atlas_is_evaluated_and_reported_naming_what_could_not_be_scored(tiny, tmp_path,
                                                                               capsys):
    n, atlas_dir = tiny

    def run(*args):
        return _cli(capsys, *args, "--atlas", atlas_dir, "-q")

    proc = run("evaluate", "-m", "default", "--baselines", "pca", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    scores = result["results"]["default"]
    for key in ("instrument", "pitch"):
        why = scores["retrieval"][key]["error"]
        assert why == ("k=10 must be at most the number of other labelled points (4)" if n == 5
                       else f"no labelled test sample for {key!r}")
    if result["protocol"]["n_frames"]["test"] < 2:
        assert scores["manifold"] == {"error": "0 test frames: trustworthiness and continuity "
                                               "need at least 2"}
    else:
        assert scores["manifold"]["skipped_ks"] == [5, 10, 20, 50]  # too few for any k
    assert n != 5 or scores["accuracy"]["instrument"]["test_accuracy"] == 1.0  # the rest goes on
    proc = run("evaluate", "-m", "default", "--baselines", "pca")
    assert proc.returncode == 0, proc.stderr
    # (with one sample, baseline:pca fails as a whole: its row says so, not these lines)
    assert "not scored: retrieval of 'instrument' (default" in proc.stdout
    if result["protocol"]["n_frames"]["test"] >= 2:  # the dashes of trust@10 and cont@10
        assert "not scored: trustworthiness and continuity at k = 5, 10, 20, 50 (default" \
            in proc.stdout
    # without a validation file, k is the smallest, not chosen: the table says so
    unchosen = "no labelled validation frame, so the smallest k was used"
    assert unchosen not in proc.stdout
    if n == 5:
        import shutil

        shutil.copytree(atlas_dir, tmp_path / "no-valid")
        with Atlas.open(tmp_path / "no-valid", write=True) as atlas:
            atlas.splits()  # drawn and stored
            with atlas.transaction() as c:
                assert c.execute("UPDATE splits SET split = 'train' WHERE split = 'valid'"
                                 ).rowcount
        proc = _cli(capsys, "evaluate", "-m", "default", "--baselines", "none", "--atlas",
                    tmp_path / "no-valid", "-q")
        assert proc.returncode == 0 and f"k not chosen for 'instrument', 'pitch': {unchosen}" \
            in proc.stdout, proc.stdout
    proc = run("report", "--models", "default", "--baselines", "pca", "--output",
               str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<p>Not scored:</p>" in page
    assert "<li>retrieval of &#x27;pitch&#x27; (default" in page


def test_the_results_tables_for_the_docs_read_the_same_score_table():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "results_table.py"
    spec = importlib.util.spec_from_file_location("results_table", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    results = _toy_scores()["results"]
    configs = {"m": {"neighbourhood": {"name": "instrument"}, "preset": "fast",
                     "training": {"iterations": 12000, "cpu_seconds": 1234.4}}}
    lines = tool.reproduction_table(results, configs)
    assert lines[1] == "|---|---|---|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == "| m | instrument | fast | 12,000 | 1,234 | 0.500 | – | 0.448 | – |"
    further = tool.further_table({"m": results["m"]})
    assert further[2] == ("| m | 0.250 | 0.125 | – | – | 0.900 | 0.800 | 0.750 (0.500) | "
                          "0.000 (1.000) |")


def test_a_report_section_says_why_a_map_of_fewer_than_3_dimensions_has_no_views(tmp_path):
    """The views and trajectories are drawn in 3-D: a 2-D model's section had none, unsaid."""
    from types import SimpleNamespace

    from soundatlas.report import _model_section

    m = SimpleNamespace(config={"neighbourhood": {"name": "pitch"}, "preset": "fast"})
    two = _model_section("flat", m, {}, [], tmp_path, "flat", dims=2)
    assert "No map views or trajectories: flat maps to 2 dimensions, and they are drawn in 3" \
        in two
    assert "No map views" not in _model_section("deep", m, {}, [], tmp_path, "deep", dims=3)


def test_every_model_of_a_report_gets_its_own_figure_names():
    """'a b' (id 14) takes the stem a_b-14, which a model named 'a_b-14' has as its own name:
    one's figures overwrote the other's, and both sections showed the same."""
    from types import SimpleNamespace

    from soundatlas.report import _stems

    models = [SimpleNamespace(name=n, id=i) for n, i in
              (("a b", 14), ("a_b-14", 15), ("a_b", 16), ("plain", 3), ("a b!", 17))]
    stems = _stems(models)
    assert len(set(stems.values())) == len(models)
    assert stems[3] == "plain" and stems[16] == "a_b" and stems[14] == "a_b-14"
