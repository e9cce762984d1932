"""``suggest --from``: a labelled library's samples label another library's (a new pack)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_in_process
from soundatlas.atlas import Atlas

SR = 22050
KINDS = ("kick", "hat", "tone")


def _hit(kind: str, seed: int, *, gain: float) -> np.ndarray:
    """A kick (falling sine), a hat (bright noise burst) or a held tone, varied by ``seed``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.5 * SR)) / SR
    if kind == "kick":
        f = 45 + 10 * rng.random() + 120 * np.exp(-t * 30)
        y = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t * 8)
    elif kind == "hat":
        y = np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t * (30 + 20 * rng.random()))
    else:
        y = np.sin(2 * np.pi * (300 + 200 * rng.random()) * t) * np.exp(-t * 1.5)
    return (gain * y / np.abs(y).max()).astype(np.float32)


def _library(root: Path, *, n: int, seed: int, gain: float, labelled: bool) -> Path:
    """``n`` sounds of each kind; with ``labelled``, a manifest gives each its ``drum_class``."""
    rows = ["path,drum_class"]
    for kind in KINDS:
        for i in range(n):
            rel = f"{kind}s/{kind}_{seed}_{i:02d}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, _hit(kind, seed * 100 + i, gain=gain), SR, subtype="PCM_16")
            rows.append(f"{rel},{kind}")
    if labelled:
        (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def _cli(capsys, *args):
    proc = run_in_process(capsys, *args)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def reference_and_pack(tmp_path_factory):
    """A labelled reference library and an unlabelled pack of another 'maker' (other seeds,
    another gain, folders named otherwise), both mapped with the shipped model: the atlases."""
    from soundatlas.cli import main

    root = tmp_path_factory.mktemp("suggest-from")
    ref = _library(root / "ref", n=8, seed=1, gain=0.8, labelled=True)
    pack = _library(root / "pack", n=5, seed=7, gain=0.3, labelled=False)
    for kind in KINDS:  # the pack's folders say nothing
        (pack / f"{kind}s").rename(pack / f"folder_{KINDS.index(kind)}")
    for lib in (ref, pack):
        assert main(["map", str(lib), "-q"]) == 0
    return ref / ".soundatlas", pack / ".soundatlas"


def _truth(pack_atlas: Path) -> dict[str, str]:
    with Atlas.open(pack_atlas) as atlas:
        return {r.path: r.path.rsplit("/", 1)[1].split("_")[0]
                for r in atlas.samples(atlas.sample_ids().tolist())}


@pytest.mark.parametrize("space", ["timbre", "similarity"])
def test_a_labelled_library_labels_a_new_pack(reference_and_pack, capsys, space):
    ref, pack = reference_and_pack
    truth = _truth(pack)
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--space", space)
    assert rc == 1 and "no label 'drum_class' in this atlas" in err  # its own: none
    rc, out, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--space", space,
                        "--from", ref, "-k", "5", "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["from"] == str(ref) and got["n"] == len(truth) == 15
    assert {s["path"]: s["value"] for s in got["suggestions"]} == truth
    assert all(s["confidence"] == 1.0 for s in got["suggestions"])  # 5 of 5 agree


def test_suggestions_from_a_reference_are_stored_in_the_pack_alone(reference_and_pack, capsys,
                                                                    tmp_path):
    import shutil

    ref, pack = reference_and_pack
    pack_copy = tmp_path / "pack"
    shutil.copytree(pack.parent, pack_copy, symlinks=True)
    atlas = pack_copy / ".soundatlas"
    rc, out, err = _cli(capsys, "suggest", "--atlas", atlas, "-l", "drum_class", "--from", ref,
                        "--apply", "--json")
    got = json.loads(out)
    n_far = sum(s["far"] for s in got["suggestions"])
    assert rc == 0 and got["applied"] == 15 - n_far and got["n_far"] == n_far, err
    assert got["space"] == "similarity"  # the default with --from
    if n_far:  # those marked far are stored only when asked for
        rc, out, _ = _cli(capsys, "suggest", "--atlas", atlas, "-l", "drum_class", "--from",
                          ref, "--apply", "--keep-far", "--json")
        assert rc == 0 and json.loads(out)["applied"] == n_far
    with Atlas.open(atlas) as a:
        stored = a.labels("drum_class")
        assert len(stored) == 15 and a.labels("drum_class", suggested=False) == {}
    with Atlas.open(ref) as r:
        assert r.user_label_rows(key="drum_class") == []  # the reference is left alone
    # a second run has nothing left to suggest: the pack's samples carry the label now
    rc, out, _ = _cli(capsys, "suggest", "--atlas", atlas, "-l", "drum_class", "--from", ref,
                      "--json")
    assert rc == 0 and json.loads(out)["n"] == 0


def test_a_references_own_suggestions_do_not_vote(reference_and_pack, capsys, tmp_path):
    """Labels the reference got from a map are guesses, not a truth to pass on."""
    import shutil

    ref, pack = reference_and_pack
    ref_copy = tmp_path / "ref"
    shutil.copytree(ref.parent, ref_copy, symlinks=True)
    with Atlas.open(ref_copy / ".soundatlas", write=True) as r:
        ids = r.sample_ids().tolist()
        r.add_suggestions([(ids, "mood:dark", 0.9)])
        assert set(r.labels("mood").values()) == {"dark"}
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "mood", "--space", "input",
                      "--from", ref_copy / ".soundatlas")
    assert rc == 1 and "has 'mood' of its own (its suggestions do not count)" in err, err
    with Atlas.open(ref_copy / ".soundatlas", write=True) as r:  # the user's own tag votes
        r.tag(ids[:1], add=["mood:dark"])
    rc, out, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "mood", "--space", "input",
                        "--from", ref_copy / ".soundatlas", "--json")
    assert rc == 0 and {s["value"] for s in json.loads(out)["suggestions"]} == {"dark"}, err
    assert {s["confidence"] for s in json.loads(out)["suggestions"]} == {0.1}  # 1 of k=10


def test_a_reference_that_cannot_be_searched_beside_the_pack_is_named(reference_and_pack,
                                                                       capsys, tmp_path):
    import shutil

    from soundatlas.indexing import index_library

    ref, pack = reference_and_pack
    for same in (pack, pack.parent):  # the atlas, or the library it is the atlas of
        rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--from", same)
        assert rc == 2 and "is the atlas suggested for" in err
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--from",
                      tmp_path / "nothing")
    assert rc == 1 and "no atlas at" in err and "nothing" in err
    # indexed, not embedded: the command that embeds it is named
    bare = tmp_path / "bare"
    shutil.copytree(ref.parent, bare, ignore=shutil.ignore_patterns(".soundatlas"))
    index_library(bare, n_jobs=1)
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--from",
                      bare / ".soundatlas")
    assert rc == 1 and "has not embedded every sample of the reference atlas" in err, err
    assert f"soundatlas embed --atlas {bare / '.soundatlas'} --model default" in err
    # other CQT parameters: no space of the two can be compared
    other = tmp_path / "other"
    shutil.copytree(ref.parent, other, ignore=shutil.ignore_patterns(".soundatlas"))
    rc, _, err = _cli(capsys, "index", other, "-q", "--cqt-kernel", "folded")
    assert rc == 0, err
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--space", "input",
                      "--from", other / ".soundatlas")
    assert rc == 1 and "other CQT parameters" in err, err


def test_same_model_compares_weights_and_the_config_each_atlas_recorded(reference_and_pack):
    import dataclasses

    from soundatlas.artifact import same_model

    ref, pack = reference_and_pack
    with Atlas.open(ref) as r, Atlas.open(pack) as p:
        a, b = r.model("default"), p.model("default")
        assert same_model(r, a, p, b)
        older = dataclasses.replace(b, config={**b.config, "iterations": -1})
        assert not same_model(r, a, p, older)  # embedded by another version of 'default'


def test_a_reference_label_curve_scores_every_sample_against_its_own_truth():
    from soundatlas.suggest import reference_label_curve

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 8))
    ref_cls, cls = rng.integers(0, 3, 300), rng.integers(0, 3, 90)
    ref = centres[ref_cls] + rng.normal(0, 0.3, (300, 8))
    scored = centres[cls] + 0.5 + rng.normal(0, 0.3, (90, 8))  # another maker: shifted
    r = reference_label_curve(scored, [f"c{c}" for c in cls], ref, [f"c{c}" for c in ref_cls],
                              k=10, thresholds=(0.0, 0.9))
    assert r["n_scored"] == 90 and r["n_reference"] == 300
    assert r["curve"][0]["coverage"] == 1.0 and r["curve"][0]["precision"] == r["accuracy"]
    assert r["accuracy"] > 0.9 and set(r["per_value"]) == {"c0", "c1", "c2"}
    swapped = reference_label_curve(scored, [f"c{(c + 1) % 3}" for c in cls], ref,
                                    [f"c{c}" for c in ref_cls], k=10)
    assert swapped["accuracy"] < 0.1  # the truth counts, and only the truth


def test_a_sound_unlike_every_voter_is_marked_far(reference_and_pack, capsys, tmp_path):
    """A pad among drums gets a drum class from a vote all the same; the mark says that no
    labelled sample is like it, and --apply leaves it out unless --keep-far."""
    import shutil

    from soundatlas.cli import main
    from soundatlas.suggest import reach, vote

    ref, pack = reference_and_pack
    lib = tmp_path / "pack"
    shutil.copytree(pack.parent, lib, symlinks=True)
    t = np.arange(SR * 2) / SR  # a slow, wide chord: like no kick, hat or short tone
    pad = sum(np.sin(2 * np.pi * f * t) for f in (110, 138.6, 164.8, 220)) * np.minimum(t, 1)
    sf.write(lib / "pad.wav", (0.2 * pad / np.abs(pad).max()).astype(np.float32), SR)
    assert main(["map", str(lib), "-q"]) == 0
    rc, out, err = _cli(capsys, "suggest", "--atlas", lib / ".soundatlas", "-l", "drum_class",
                        "--from", ref, "--json")
    got = {s["path"]: s for s in json.loads(out)["suggestions"]}
    assert rc == 0 and got["pad.wav"]["far"], err
    marks = [s["far"] for s in got.values()]
    assert marks == sorted(marks)  # those within reach first
    assert sum(s["far"] for s in got.values()) <= 2  # the pack's drums lie within reach
    rc, out, _ = _cli(capsys, "suggest", "--atlas", lib / ".soundatlas", "-l", "drum_class",
                      "--from", ref, "--apply")
    assert rc == 0 and "marked far and not stored (--keep-far stores them)" in out
    with Atlas.open(lib / ".soundatlas") as a:
        pad_id = next(r.id for r in a.samples(a.sample_ids().tolist()) if r.path == "pad.wav")
        assert pad_id not in a.labels("drum_class")
    # the reach: the 99th percentile of the voters' distances to their nearest others, a copy
    # counted once (each copy would find the other at 0, and hide the sound it is a copy of)
    voters = np.array([[0, 0], [0, 0], [1, 0], [3, 0]], np.float32)  # (0, 0) twice
    assert reach(voters) == pytest.approx(np.quantile([1, 1, 2], 0.99))  # 1.98
    assert reach(np.repeat(voters[2:], 3, axis=0)) == pytest.approx(2.0)  # copies alone: 2
    assert reach(voters[:2]) == float("inf")  # one sound at two paths: nothing to measure
    both = np.concatenate([voters, [[4.5, 0], [5.5, 0]]]).astype(np.float32)
    _, _, d = vote(both, np.arange(4), list("aabb"), np.array([4, 5]), 2, with_distance=True)
    assert d.tolist() == pytest.approx([1.5, 2.5])  # near (1.5 <= 1.98), far (2.5 > 1.98)


def test_the_reach_of_many_voters_is_measured_on_a_sample_of_them(monkeypatch):
    import soundatlas.suggest as suggest

    rng = np.random.default_rng(0)
    voters = rng.normal(0, 1, (600, 4)).astype(np.float32)
    exact = suggest.reach(voters)
    monkeypatch.setattr(suggest, "REACH_SAMPLE", 200)
    sampled = suggest.reach(voters)
    assert sampled == suggest.reach(voters)  # seeded
    assert sampled == pytest.approx(exact, rel=0.2)  # a percentile of 200 of the 600
    # many voters: fewer of them measured (each against all), so the page does not wait long
    monkeypatch.setattr(suggest, "REACH_SAMPLE", 5000)
    assert suggest.reach_sample_size(600) == 600
    assert suggest.reach_sample_size(40_000) == 5000
    assert suggest.reach_sample_size(200_000) == suggest.REACH_PAIRS // 200_000 == 1000
    assert suggest.reach_sample_size(10**8) == suggest.REACH_MIN


def test_what_keeps_two_atlases_apart_is_named_with_the_way_out(reference_and_pack, capsys,
                                                                tmp_path):
    """A model of the same name trained again in place, an older version of the similarity
    space, a reference not embedded through, a library named for its atlas, an empty --from."""
    import shutil

    from soundatlas.artifact import SHIPPED_MODELS, resolve_model
    from soundatlas.embed import embed_atlas, ensure_registered
    from soundatlas.indexing import index_library

    ref, pack = reference_and_pack
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--from", "")
    assert rc == 2 and "--from: empty" in err
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--from",
                      ref.parent)
    assert rc == 1 and f"(--from {ref})" in err, err  # the option the user typed

    def fresh(name: str) -> Path:  # a copy of a library, indexed anew
        lib = tmp_path / name
        shutil.copytree(ref.parent if name.startswith("ref") else pack.parent, lib,
                        ignore=shutil.ignore_patterns(".soundatlas"))
        index_library(lib, n_jobs=1)
        return lib / ".soundatlas"

    # a model of one's own, from its folder: the way out names the folder, not only its name
    mine = tmp_path / "mine"
    shutil.copytree(SHIPPED_MODELS / "default", mine)
    config = json.loads((mine / "config.json").read_text())
    (mine / "config.json").write_text(json.dumps({**config, "name": "mine"}))
    p, r = fresh("pack"), fresh("ref-mine")
    assert _cli(capsys, "embed", "--atlas", r, "-m", mine, "-q")[0] == 0
    rc, _, err = _cli(capsys, "suggest", "--atlas", p, "-l", "drum_class", "--from", r, "-m",
                      "mine")  # the pack lacks it: the way to embed it, from its folder
    assert rc == 1 and f"soundatlas embed --atlas {p} --model {mine.resolve()}" in err, err
    r = fresh("ref-mine-2")
    assert _cli(capsys, "embed", "--atlas", p, "-m", mine, "-q")[0] == 0
    rc, _, err = _cli(capsys, "suggest", "--atlas", p, "-l", "drum_class", "--from", r, "-m",
                      "mine")
    assert rc == 1 and f"soundatlas embed --atlas {r} --model {mine.resolve()}" in err, err
    assert _cli(capsys, "embed", "--atlas", r, "-m", mine, "-q")[0] == 0
    rc, out, err = _cli(capsys, "suggest", "--atlas", p, "-l", "drum_class", "--from", r, "-m",
                        "mine", "--json")
    assert rc == 0 and json.loads(out)["n"] == 15, err
    # the same folder's model trained again: the weights are today's for both atlases, but the
    # pack's points are the first version's
    weights = dict(np.load(mine / "weights.npz"))
    np.savez(mine / "weights.npz", **{k: v * 0.5 for k, v in weights.items()})
    (mine / "config.json").write_text(json.dumps({**config, "name": "mine", "again": 1}))
    r2 = fresh("ref-again")
    assert _cli(capsys, "embed", "--atlas", r2, "-m", mine, "-q")[0] == 0
    rc, _, err = _cli(capsys, "suggest", "--atlas", p, "-l", "drum_class", "--from", r2, "-m",
                      "mine")
    assert rc == 1 and "is not the one of" in err and "again: absent in" in err, err
    # the similarity space of an earlier soundatlas (the timbre block at weight 1)
    old = fresh("ref-old-space")
    with Atlas.open(old, write=True) as atlas:
        artifact, registration = resolve_model(atlas, "default")
        embed_atlas(atlas, artifact, ensure_registered(atlas, artifact, registration),
                    similarity_weight=1.0)
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--from", old)
    assert rc == 1 and "different versions of the space" in err, err
    assert f"soundatlas embed --atlas {old} --model default" in err  # the older one
    # a sound added to the reference and not embedded yet
    sf.write(old.parent / "kicks" / "kick_new.wav", _hit("kick", 999, gain=0.8), SR)
    index_library(old.parent, n_jobs=1)
    rc, _, err = _cli(capsys, "suggest", "--atlas", pack, "-l", "drum_class", "--from", old,
                      "--space", "map")
    assert rc == 1 and "has not embedded every sample of the reference atlas" in err, err
