"""Sound out: concatenative synthesis along paths, mosaics, trajectory figures (soundatlas.synth).

One small real library (48 notes of flute and tuba, mapped with the shipped default model) is made
once for the module; every render is a few seconds of audio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import renders_until, run_in_process
from soundatlas import synth
from soundatlas.atlas import Atlas
from soundatlas.embed import frame_energy
from soundatlas.errors import ParameterError

CLASSES = {"flute": (73, 60, 71), "tuba": (58, 36, 47)}  # 12 pitches each, short and long: 48 notes
BIN = Path(sys.executable).parent / "soundatlas"
CLICK = 2.5  # max |y[n+1] - y[n]| over the 99.9th percentile of |y[n+1] - y[n]|


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    from conftest import map_with_shipped_model

    lib = tmp_path_factory.mktemp("synth") / "lib"
    map_with_shipped_model(lib, CLASSES)
    return lib


@pytest.fixture
def atlas(library):
    with Atlas.open(library / ".soundatlas") as a:
        yield a


@pytest.fixture
def index(atlas):
    return synth.FrameIndex.load(atlas)


def click_ratio(y: np.ndarray) -> float:
    d = np.abs(np.diff(np.asarray(y, dtype=np.float64)))
    return float(d.max() / np.percentile(d, 99.9))


def loud_rows(index, atlas, folder: str, n: int) -> np.ndarray:
    """Rows of ``n`` frames from the middle of ``folder``'s long notes (well inside the sound)."""
    ids = {r.id: r for r in atlas.samples() if r.path.startswith(folder + "/") and "long" in r.path}
    rows = [int(np.flatnonzero(index.sample_ids == sid)[8]) for sid in sorted(ids)]
    return np.array(rows[:n])


def run_cli(*args, check_rc=None):
    env = {**os.environ, "CI": "1"}
    proc = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.stdout, proc.stderr)
    return proc


# -- the frame index -------------------------------------------------------------------------------


def test_frame_index_holds_sounding_frames_and_is_cached(atlas, index):
    assert len(np.unique(index.sample_ids)) == atlas.n_samples() == 48
    assert 0 < len(index) < atlas.n_frames_total()  # the silent tails are left out
    rec = atlas.samples()[0]
    energy = frame_energy(atlas.features(rec))
    mine = index.frames[index.sample_ids == rec.id]
    level = (energy / energy.max()).astype(np.float32)
    assert set(mine) == set(np.flatnonzero(level >= synth.SILENCE))
    again = synth.FrameIndex.load(atlas)
    assert again.from_cache and list((atlas.path / "cache").glob("frames-*.npz"))
    np.testing.assert_array_equal(again.points, index.points)
    traj = atlas.trajectory(index.model_id, rec.id)
    np.testing.assert_allclose(index.points[index.sample_ids == rec.id], traj[mine])


# -- rendering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sr, grain, overlap", [(None, 0.5, 0.5), (22050, 0.3, 0.75)])
def test_output_length_is_the_sum_of_the_durations(atlas, index, sr, grain, overlap):
    rows = np.arange(0, len(index), len(index) // 4)[:4]
    path = synth.MapPath(index.points[rows], [0.7, 1.3, 0.45, 2.0])
    r = synth.render(atlas, None, path, sr=sr, grain=grain, overlap=overlap, index=index)
    assert r.sr == (sr or 44100)  # default: the files' own rate
    assert abs(len(r.y) - 4.45 * r.sr) <= grain * (1 - overlap) * r.sr
    assert r.y.dtype == np.float32 and np.abs(r.y).max() <= synth.CEILING
    assert r.n_decoded == r.n_samples_used  # each file decoded once


def test_resynthesis_reembeds_near_the_requested_path(atlas, index):
    """Re-embed the rendered audio: its frames lie near the path asked for, far nearer than to a
    random path of the same length."""
    from soundatlas.artifact import resolve_model
    from soundatlas.cqt import cqt_batch
    from soundatlas.embed import embed_file
    import soxr

    artifact, _ = resolve_model(atlas, "default")
    rng = np.random.default_rng(0)
    path = synth.MapPath(index.points[rng.choice(len(index), 8, replace=False)], np.full(8, 1.0))
    r = synth.render(atlas, None, path, index=index)
    F = cqt_batch([soxr.resample(r.y, r.sr, 16000)])[0].astype(np.float16).astype(np.float32)
    traj, _ = embed_file(artifact, F, "rendered")
    t = np.arange(len(traj)) * 0.05
    near = np.linalg.norm(traj - path.at(t), axis=1).mean()
    other = synth.random_walk(index, duration=path.duration, seed=7).at(t)
    far = np.linalg.norm(traj - other, axis=1).mean()
    assert near < 0.5 * far, (near, far)


def test_joins_have_no_clicks_where_plain_concatenation_has(atlas, index):
    """Every grain from another sample (flute, tuba, flute, ...): the windowed overlap-add has no
    step at the joins; the same grains cut square and laid end to end do."""
    flute, tuba = loud_rows(index, atlas, "flute", 8), loud_rows(index, atlas, "tuba", 8)
    rows = np.stack([flute, tuba], axis=1).reshape(-1)
    path = synth.MapPath(index.points[rows], np.full(len(rows), 0.25))  # one grain hop each
    r = synth.render(atlas, None, path, index=index)
    assert r.window_ripple < 1e-6  # Hann at 50%: the windows add up to a constant
    assert click_ratio(r.y) < CLICK

    cache = synth.AudioCache(atlas.library, r.sr)
    recs = {rec.id: rec for rec in atlas.samples(sorted({s for s, _ in r.grains}))}
    hop = int(round(0.25 * r.sr))
    pieces = []
    for (sid, frame), gain in zip(r.grains, r.gains):
        y = cache.get(recs[sid])
        start = int(round(frame * 0.05 * r.sr)) - hop // 2
        pieces.append(gain * y[start : start + hop])
    naive = np.concatenate(pieces)
    assert click_ratio(naive) > CLICK


def test_other_overlaps_are_normalised_and_click_free(atlas, index):
    assert synth.window_ripple(1000, 500)[1] < 1e-6 and synth.window_ripple(1000, 250)[1] < 1e-6
    assert synth.window_ripple(1000, 400)[1] > 0.01
    rows = loud_rows(index, atlas, "flute", 3)
    path = synth.MapPath(index.points[rows], np.full(3, 1.5))
    for overlap in (0.0, 0.6):
        r = synth.render(atlas, None, path, overlap=overlap, index=index)
        assert r.window_ripple > 0.01
        assert click_ratio(r.y) < CLICK


def best_alignment(y: np.ndarray, x: np.ndarray) -> float:
    """The highest normalised correlation of ``y`` with any stretch of ``x`` as long."""
    from scipy.signal import correlate, fftconvolve

    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    energy = np.sqrt(np.maximum(fftconvolve(x**2, np.ones(len(y)), mode="valid"), 1e-20))
    return float((correlate(x, y, mode="valid") / (energy * np.linalg.norm(y))).max())


def test_a_held_point_plays_on_through_its_sound_instead_of_comb_filtering_it(atlas, index):
    """A path held 1.5 s on one frame of a long tuba note: every grain snaps to that frame.
    With hold="advance" (the default) each grain reads on from the one before, so overlapping
    halves are one stretch of the file: the output is the note played on (a part of it matches
    the original at > 0.99). With hold="repeat" (the reference) each grain re-reads the frame,
    and copies 0.25 s apart of a low tone interfere: nothing in the original matches as well."""
    row = loud_rows(index, atlas, "tuba", 1)
    path = synth.MapPath(index.points[row], [1.5])
    on = synth.render(atlas, None, path, index=index)
    again = synth.render(atlas, None, path, index=index, hold="repeat")
    assert on.hold == "advance" and again.hold == "repeat"
    assert len(set(on.grains)) == len(set(again.grains)) == 1  # one frame throughout
    (rec,) = atlas.samples([on.grains[0][0]])
    x = synth.AudioCache(atlas.library, on.sr).get(rec)
    middle = slice(int(0.5 * on.sr), int(1.0 * on.sr))
    assert best_alignment(on.y[middle], x) > 0.99
    assert best_alignment(again.y[middle], x) < 0.9
    assert click_ratio(on.y) < CLICK
    with pytest.raises(ParameterError, match="hold='loop' must be one of advance, repeat"):
        synth.render(atlas, None, path, index=index, hold="loop")


def test_held_grains_read_a_hop_on_from_where_the_last_was_read_and_loop_back():
    """Where each held grain starts in its file (800 samples a frame, grains of 800, hop 400):
    a hop on from where the grain before was read, also where the cache shifted that one to lie
    inside the file; back to the held frame when the centre would pass the last sounding frame
    or the grain's end the file's end; a file shorter than a grain as snapped; grains before
    the output's start leading up to the first one, which reads the snapped frame."""
    from soundatlas.synth.render import _held_sources

    # (sample, its sounding frames, its file's length in samples)
    layout = [(7, range(2, 7), 8000), (9, range(0, 4), 4000), (11, range(0, 1), 500),
              (13, range(0, 5), 3000)]
    sample_ids = np.array([sid for sid, frames, _ in layout for _ in frames])
    frames = np.array([f for _, fs, _ in layout for f in fs], dtype=np.int32)
    index = synth.FrameIndex("m", 1, sample_ids, frames, np.zeros((len(frames), 3), np.float32),
                             0.05)
    lengths = {sid: n for sid, _, n in layout}
    row = {(int(s), int(f)): i for i, (s, f) in enumerate(zip(sample_ids, frames))}

    def starts(sample, frame, n, first=0):
        rows = np.full(n, row[(sample, frame)])
        return _held_sources(rows, [frame * 800 - 400] * n, index, 400, 800, 800.0,
                             lengths.get, first=first)

    centres = [c + 400 for c in starts(7, 3, 9)]  # sounds to frame 6, centred at 4800
    assert centres == [2400, 2800, 3200, 3600, 4000, 4400, 4800, 2400, 2800]
    assert starts(9, 0, 3) == [-400, 400, 800]  # the first is cut from 0: then a hop on
    assert starts(13, 2, 5) == [1200, 1600, 2000, 1200, 1600]  # 2400 would end past 3000
    assert starts(11, 0, 3) == [-400, -400, -400]  # shorter than a grain
    assert starts(7, 3, 5, first=2) == [1200, 1600, 2000, 2400, 2800]
    # two frames in turn: each starts where it snapped
    rows = np.array([row[(7, 3)], row[(7, 3)], row[(9, 1)], row[(9, 1)]])
    assert _held_sources(rows, [2000, 2000, 400, 400], index, 400, 800, 800.0,
                         lengths.get) == [2000, 2400, 400, 800]


def test_a_held_attack_and_a_held_frame_that_loops_play_on(atlas, index):
    """Held on the first sounding frame of a long tuba note, whose grain the file's start cuts
    short: the output still plays the note on (every grain a hop further than the last was
    read). Held 3 s on a frame 0.6 s before the note's last sounding frame: it loops back, and
    between the loop points it is the note itself; no join clicks. (`repeat` matches 0.51 and
    0.84 here.)"""
    rows = np.flatnonzero(index.sample_ids == index.sample_ids[loud_rows(index, atlas, "tuba",
                                                                         1)[0]])
    (rec,) = atlas.samples([int(index.sample_ids[rows[0]])])
    first = synth.render(atlas, None, synth.MapPath(index.points[rows[:1]], [1.5]), index=index)
    x = synth.AudioCache(atlas.library, first.sr).get(rec)
    sr = first.sr
    assert best_alignment(first.y[int(0.1 * sr) : int(1.0 * sr)], x) > 0.99
    late = rows[-13]  # 12 frames (0.6 s) before the last sounding one
    r = synth.render(atlas, None, synth.MapPath(index.points[[late]], [3.0]), index=index)
    again = synth.render(atlas, None, synth.MapPath(index.points[[late]], [3.0]), index=index,
                         hold="repeat")
    # the release: each grain's own gain (the level line) shapes it, so not quite 0.99
    assert best_alignment(r.y[int(0.1 * sr) : int(0.45 * sr)], x) > 0.95
    assert best_alignment(again.y[int(0.1 * sr) : int(0.45 * sr)], x) < 0.9
    assert np.all(r.gains[(r.times > 0.3) & (r.times < 2.7)] > 0)
    assert click_ratio(r.y) < CLICK


def test_loudness_is_matched_and_the_limiter_never_lets_it_clip(atlas, index):
    """Release tails and loudest frames in turn: raw, their grains differ by over 10 dB; matched
    to the median grain RMS, every second of the output is within 3 dB of the others."""
    long = [rec for rec in atlas.samples() if "long" in rec.path]
    loudest, tails = [], []
    for rec in [r for r in long if r.path.startswith("flute/")][:3] + \
            [r for r in long if r.path.startswith("tuba/")][:3]:
        rows = np.flatnonzero(index.sample_ids == rec.id)
        energy = frame_energy(atlas.features(rec))
        loudest.append(rows[np.argmax(energy[index.frames[rows]])])
        tails.append(rows[-1])  # the last sounding frame: the release
    rows = np.array([r for pair in zip(tails, loudest) for r in pair])
    path = synth.MapPath(index.points[rows], np.full(len(rows), 1.0))

    def spread_db(y, sr):
        rms = [np.sqrt(np.mean(y[int((k + 0.25) * sr) : int((k + 0.75) * sr)].astype(float) ** 2))
               for k in range(len(rows))]
        return 20 * np.log10(max(rms) / min(rms))

    r = synth.render(atlas, None, path, index=index)
    raw = synth.render(atlas, None, path, index=index, max_gain=1.0,  # every gain 1: unmatched
                       loudness=lambda times, seconds: np.full(len(times), 1e3))
    assert spread_db(raw.y, raw.sr) > 10
    assert spread_db(r.y, r.sr) < 3
    loud = synth.render(atlas, None, path, index=index, max_gain=1000,
                        loudness=lambda times, seconds: np.full(len(times), 3.0))
    assert loud.limiter_db > 6
    assert np.abs(loud.y).max() <= synth.CEILING
    assert click_ratio(loud.y) < CLICK


def test_exclude_a_folder_removes_its_samples(atlas, index):
    tuba = {r.id for r in atlas.samples() if r.path.startswith("tuba/")}
    path = synth.MapPath(index.points[loud_rows(index, atlas, "tuba", 4)], np.full(4, 0.5))
    used = {s for s, _ in synth.render(atlas, None, path, index=index).grains}
    assert used & tuba
    r = synth.render(atlas, None, path, index=index, exclude=["tuba/"])
    assert r.grains and not {s for s, _ in r.grains} & tuba and r.n_excluded == len(tuba)
    one = sorted(used & tuba)[0]
    assert one not in {s for s, _ in synth.render(atlas, None, path, index=index,
                                                  exclude=[str(one)]).grains}
    with pytest.raises(ParameterError, match="matches no sample"):
        synth.resolve_exclusions(atlas, ["violin"])


def test_exclude_digits_are_a_folder_where_no_sample_has_that_id_and_both_are_refused(tmp_path):
    """An ITEM of digits is a sample id, a folder of the library (808/) where no sample has
    that id, and refused, naming both readings and how to give each, where it is both."""
    from conftest import make_tone_library
    from soundatlas.indexing import index_library

    lib = make_tone_library(tmp_path / "lib", n_per_folder=3, folders=("5", "808", "low"))
    index_library(lib, n_jobs=1)
    with Atlas.open(lib / ".soundatlas") as atlas:
        ids = {r.path: r.id for r in atlas.samples()}
        under = {f: {sid for p, sid in ids.items() if p.startswith(f + "/")}
                 for f in ("5", "808", "low")}
        assert 808 not in ids.values() and 5 in ids.values() and 5 not in under["5"]
        five = next(p for p, sid in ids.items() if sid == 5)
        assert synth.resolve_exclusions(atlas, ["808"]) == under["808"]
        assert synth.resolve_exclusions(atlas, [" 808 ", "808/"]) == under["808"]
        with pytest.raises(ParameterError) as exc:
            synth.resolve_exclusions(atlas, ["5"])
        message = str(exc.value)
        assert "ambiguous" in message and "sample id 5" in message and five in message
        assert "give 5/ for the folder" in message
        assert synth.resolve_exclusions(atlas, ["5/"]) == under["5"]
        assert synth.resolve_exclusions(atlas, ["./5"]) == under["5"]
        assert synth.resolve_exclusions(atlas, [five]) == {5}
        assert synth.resolve_exclusions(atlas, [5]) == {5}  # a number is always an id
        # an id with no folder of that name stays an id
        assert synth.resolve_exclusions(atlas, [str(max(under["low"]))]) == {max(under["low"])}
        with pytest.raises(ParameterError, match="no sample with that id, nor a folder"):
            synth.resolve_exclusions(atlas, ["999"])


def test_walks_are_deterministic_for_a_seed(index):
    for walk in (synth.random_walk, synth.knn_walk):
        a, b = walk(index, duration=6, seed=3), walk(index, duration=6, seed=3)
        np.testing.assert_array_equal(a.points, b.points)
        assert abs(a.duration - 6) < 1e-9
        assert not np.array_equal(a.points, walk(index, duration=6, seed=4).points)
    lo, hi = index.bounds()
    walked = synth.random_walk(index, duration=20, seed=1).points
    assert np.all(walked >= lo - 1e-9) and np.all(walked <= hi + 1e-9)
    # a knn walk steps along its own note or to a frame of another sample, never elsewhere
    knn = synth.knn_walk(index, duration=20, seed=1)
    rows = index.nearest(knn.points)[0]
    sids, frames = index.sample_ids[rows], index.frames[rows]
    same = sids[1:] == sids[:-1]
    assert np.all(frames[1:][same] == frames[:-1][same] + 1)
    assert len(set(sids.tolist())) > 5


# -- mosaic ----------------------------------------------------------------------------------------


def test_mosaic_exclude_self_uses_no_grain_of_the_target(atlas, index, library, tmp_path):
    target = library / "flute" / "flute_066_v080_long.wav"
    own = atlas.lookup_paths(["flute/flute_066_v080_long.wav"])["flute/flute_066_v080_long.wav"][0]
    r, facts = synth.mosaic(atlas, None, target, index=index)
    assert own in {s for s, _ in r.grains}  # its own frames are the nearest
    assert abs(r.duration - facts["duration"]) < 1e-3
    r, facts = synth.mosaic(atlas, None, target, index=index, exclude_self=True)
    assert r.grains and own not in {s for s, _ in r.grains}
    assert facts["n_self_excluded"] == 1
    copy = tmp_path / "elsewhere.wav"  # the same content outside the library: found by hash
    copy.write_bytes(target.read_bytes())
    r, _ = synth.mosaic(atlas, None, copy, index=index, exclude_self=True)
    assert own not in {s for s, _ in r.grains}


def test_mosaic_follows_the_targets_loudness(atlas, index, library):
    target = library / "tuba" / "tuba_040_v080_short.wav"
    r, _ = synth.mosaic(atlas, None, target, index=index, exclude_self=True)
    y, sr = sf.read(target, dtype="float32")
    n = int(0.25 * sr)
    head = np.sqrt(np.mean(r.y[: n].astype(np.float64) ** 2))
    tail = np.sqrt(np.mean(r.y[-n:].astype(np.float64) ** 2))
    assert head > 4 * tail  # the short note sounds, then its release fades: so does the mosaic


def test_a_mosaic_keeps_the_loudness_of_what_lies_above_the_analysis_band(atlas, index, tmp_path):
    """The target's loudness was measured at the analysis rate (16 kHz), where nothing above
    8 kHz is left: a hiss or a sweep's top came out near silence."""
    rng = np.random.default_rng(0)
    sr = 44100
    t = np.arange(sr) / sr
    hiss = 0.2 * np.sin(2 * np.pi * 11000 * t) + 0.02 * rng.standard_normal(sr)
    sf.write(tmp_path / "hiss.wav", hiss.astype(np.float32), sr)
    r, _ = synth.mosaic(atlas, None, tmp_path / "hiss.wav", index=index, sr=sr)
    odd = tmp_path / "odd.wav"  # a length that 16 kHz cannot hold: the mosaic keeps it
    sf.write(odd, hiss[:33969].astype(np.float32), sr)
    assert len(synth.mosaic(atlas, None, odd, index=index, sr=sr)[0].y) == 33969
    rms = lambda x: float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))  # noqa: E731
    mid = slice(int(0.25 * sr), int(0.75 * sr))  # away from the fades at the ends
    assert rms(r.y[mid]) > 0.25 * rms(hiss[mid]), (rms(r.y[mid]), rms(hiss[mid]))


# -- paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ("[1, 2]", "expected an object"),
    ('{"points": []}', "'points' is empty"),
    ('{"points": [[0, 0, 0], [1, 1]], "duration": 1}', "points[1]"),
    ('{"points": [[0, 0, "x"]], "duration": 1}', "points[0]"),
    ('{"points": [[0, 0, 0]]}', "no 'durations'"),
    ('{"points": [[0, 0, 0], [1, 1, 1]], "durations": [1]}', "1 entries for 2 points"),
    ('{"points": [[0, 0, 0], [1, 1, 1]], "durations": [1, -2]}', "durations[1] = -2"),
    ('{"points": [[0, 0, 0]], "duration": 0}', "duration = 0"),
    ('{"points": [[0, 0, 0]], "duration": 1, "durations": [1]}', "not both"),
    ('{"points": [[0, 0, 0]], "duratoin": 1}', "unknown key 'duratoin'"),
    ('{"points": [[0, 0, 0]], "duration": 600.5}', "lasts 600.5 s; the most is 600 s"),
])
def test_malformed_path_files_say_what_is_wrong(tmp_path, content, message):
    f = tmp_path / "path.json"
    f.write_text(content)
    with pytest.raises(ParameterError) as exc:
        synth.read_path(f)
    assert message in str(exc.value) and str(f) in str(exc.value)


@pytest.mark.parametrize("content, message", [
    ('{"points": [[%s, 0, 0]], "duration": 1}' % ("9" * 400), "(400 digits) is too large"),
    ('{"points": [[-%s, 0, 0]], "duration": 1}' % ("9" * 400), "(400 digits) is too large"),
    ('{"points": [[0, 0, 0]], "duration": %s}' % ("1" * 5000), "(5000 digits) is too large"),
    ('{"points": %s, "duration": 1}' % ("[" * 100_000 + "]" * 100_000), "nested too deeply"),
])
def test_path_files_beyond_what_json_reads_say_what_is_wrong(tmp_path, capsys, content,
                                                              message):
    """Numbers no float holds and nesting past the decoder's depth are the file's fault: one
    line naming the file, never an OverflowError, a digit-limit ValueError or RecursionError."""
    from soundatlas.cli import main

    f = tmp_path / "path.json"
    f.write_text(content)
    with pytest.raises(ParameterError) as exc:
        synth.read_path(f)
    assert message in str(exc.value) and str(f) in str(exc.value)
    assert len(str(exc.value)) < 200  # the number shortened, not quoted whole
    assert main(["synth", "--atlas", str(tmp_path / "no-atlas"), "--path", str(f), "-o",
                 str(tmp_path / "a.wav"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_a_path_file_holds_or_glides(tmp_path):
    f = tmp_path / "path.json"
    f.write_text(json.dumps({"points": [[0, 0, 0], [1, 2, 3]], "durations": [1.0, 0.5]}))
    p = synth.read_path(f)
    assert p.duration == 1.5
    np.testing.assert_allclose(p.at(np.array([0.5, 1.2, 9.0])), [[0, 0, 0], [1, 2, 3], [1, 2, 3]])
    f.write_text(json.dumps({"points": [[0, 0, 0], [1, 2, 3]], "duration": 1, "glide": True}))
    np.testing.assert_allclose(synth.read_path(f).at(np.array([0.5])), [[0.5, 1, 1.5]])


# -- the command line ------------------------------------------------------------------------------


def test_cli_synth_mosaic_and_trajectory_end_to_end(library, index, tmp_path):
    atlas_dir = library / ".soundatlas"
    out = run_cli("synth", "--atlas", atlas_dir, "--walk", "knn", "--duration", "4", "--seed",
                  "2", "--exclude", "tuba", "--output", tmp_path / "walk.wav", "--json",
                  check_rc=0)
    result = json.loads(out.stdout)
    info = sf.info(tmp_path / "walk.wav")
    assert info.samplerate == result["sr"] == 44100 and info.subtype == "PCM_16"
    assert abs(info.duration - 4.0) < 1e-3 and result["n_grains"] == 17
    assert result["n_excluded"] == 24 and result["hold"] == "advance"

    path = tmp_path / "path.json"
    path.write_text(json.dumps({"points": index.points[:3].tolist(), "duration": 0.5}))
    out = run_cli("synth", "--atlas", atlas_dir, "--path", path, "--format", "float",
                  "--output", tmp_path / "path.wav", check_rc=0).stdout
    assert "32-bit float WAV" in out and "grains" in out
    assert sf.info(tmp_path / "path.wav").subtype == "FLOAT"

    target = library / "flute" / "flute_064_v080_short.wav"
    out = run_cli("mosaic", target, "--atlas", atlas_dir, "--exclude-self", "--hold", "repeat",
                  "--output", tmp_path / "mosaic.wav", "--json", check_rc=0)
    result = json.loads(out.stdout)
    assert result["target"]["n_self_excluded"] == 1 and result["n_grains"] > 0
    assert result["hold"] == "repeat"
    assert abs(sf.info(tmp_path / "mosaic.wav").duration - result["target"]["duration"]) < 1e-3

    fig = tmp_path / "traj.png"
    out = run_cli("trajectory", "flute/flute_064_v080_long.wav", "--atlas", atlas_dir,
                  "--output", fig, check_rc=0).stdout
    assert "trajectory of flute/flute_064_v080_long.wav" in out
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 10_000
    # the figure draws the sounding part and marks its start, middle and end; the JSON says which
    result = json.loads(run_cli("trajectory", "flute/flute_064_v080_long.wav", "--atlas",
                                atlas_dir, "--output", fig, "--json", check_rc=0).stdout)
    from soundatlas.report import key_frames
    from soundatlas.frames import sounding_span

    with Atlas.open(atlas_dir) as atlas:
        rec = synth.find_sample(atlas, "flute/flute_064_v080_long.wav")
        want = sounding_span(atlas.features(rec), compression=atlas.cqt_params.compression)
    assert result["sounding"] == list(want) and want[1] < result["n_frames"] - 1  # a release
    assert f"sounding frames {want[0]}-{want[1]} drawn" in out
    assert key_frames(want) == (want[0], (want[0] + want[1]) // 2, want[1])


def test_the_command_lines_ranges_are_the_renderers():
    from soundatlas.cli.sound import GRAIN_SECONDS, RATES, WALK_SECONDS
    from soundatlas.synth.paths import MAX_DURATION, MIN_DURATION
    from soundatlas.synth.render import check_grain, check_rate

    assert WALK_SECONDS == (MIN_DURATION, MAX_DURATION)
    for grain in GRAIN_SECONDS:
        check_grain(grain, 0.5)
    for grain in (GRAIN_SECONDS[0] * 0.99, GRAIN_SECONDS[1] * 1.01):
        with pytest.raises(ParameterError, match="grain"):
            check_grain(grain, 0.5)
    for rate in RATES:
        check_rate(rate)
    for rate in (RATES[0] - 1, RATES[1] + 1):
        with pytest.raises(ParameterError, match="rate"):
            check_rate(rate)


def test_cli_bad_input_is_one_clear_line(library, tone_library, tmp_path, capsys):
    from soundatlas.cli import main
    from soundatlas.indexing import index_library

    atlas_dir = str(library / ".soundatlas")
    bad = tmp_path / "bad.json"
    bad.write_text('{"points": [[0, 0, 0]], "durations": [-1]}')
    cases = [
        (["synth", "--atlas", atlas_dir, "--path", str(bad), "-o", str(tmp_path / "a.wav")], 1,
         "durations[0] = -1 must be a positive number"),
        (["synth", "--atlas", atlas_dir, "--walk", "knn", "-o", str(tmp_path / "no" / "a.wav")],
         2, "does not exist"),
        (["synth", "--atlas", atlas_dir, "--walk", "knn", "--path", str(bad), "-o",
          str(tmp_path / "a.wav")], 2, "one of them"),
        (["synth", "--atlas", atlas_dir, "--walk", "knn", "--model", "nope", "-o",
          str(tmp_path / "a.wav")], 1, "no model 'nope'"),
        (["synth", "--atlas", atlas_dir, "--walk", "random", "-o", ""], 2,
         "--output is empty"),
        # a number out of the renderer's range is misuse, named by its option
        (["synth", "--atlas", atlas_dir, "--walk", "random", "--grain", "0.0001", "-o",
          str(tmp_path / "a.wav")], 2, "--grain: 0.0001 must be from 0.01 to 10"),
        (["synth", "--atlas", atlas_dir, "--walk", "random", "--duration", "inf", "-o",
          str(tmp_path / "a.wav")], 2, "--duration: inf must be from 0.01 to 600"),
        (["mosaic", str(tone_library / "low" / "low_036.wav"), "--atlas", atlas_dir,
          "--sample-rate", "999999", "-o", str(tmp_path / "m.wav")], 2,
         "--sample-rate: 999999 must be from 1000 to 384000"),
        (["synth", "--atlas", atlas_dir, "--walk", "knn", "--exclude", "violin", "-o",
          str(tmp_path / "a.wav")], 1, "matches no sample"),
        (["synth", "--atlas", atlas_dir, "--walk", "knn", "--exclude", " ", "-o",
          str(tmp_path / "a.wav")], 1, "exclude ' ': empty; give '.' to exclude the whole"),
        (["trajectory", "no/such.wav", "--atlas", atlas_dir, "-o", str(tmp_path / "t.png")], 1,
         "no sample 'no/such.wav'"),
        # a folder no one can write in (/proc): the figure cannot be written (a traceback)
        (["trajectory", "flute/flute_064_v080_long.wav", "--atlas", atlas_dir, "-o",
          "/proc/t.png"], 1, "cannot write /proc/t.png"),
    ]
    index_library(tone_library, n_jobs=1)  # indexed, never embedded
    cases.append((["mosaic", str(tone_library / "low" / "low_036.wav"), "--atlas",
                   str(tone_library / ".soundatlas"), "-o", str(tmp_path / "m.wav")], 1,
                  "soundatlas embed"))
    for argv, rc, message in cases:
        usage = False
        try:
            code = main(argv + ["-q"])
        except SystemExit as exc:  # argparse's own misuse: its usage, then one line
            code, usage = exc.code, True
        assert code == rc, argv
        err = capsys.readouterr().err.strip()
        lines = err.splitlines()
        assert message in lines[-1] and "Traceback" not in err, err
        assert len(lines) == 1 or (usage and lines[0].startswith("usage: soundatlas ")), err
    assert not (tmp_path / "a.wav").exists() and not list(tmp_path.glob(".*.tmp"))
    proc = run_in_process(capsys, "synth", "--atlas", atlas_dir, "--walk", "random", "--seed",
                          "-5", "-o", tmp_path / "a.wav")  # numpy's traceback, before
    assert proc.returncode == 2 and "--seed: -5 must not be negative" in proc.stderr, proc
    # outputs whose temporary name was too long for the file system, the name itself not
    long = "w" * 240
    for command, suffix in (("synth", ".wav"), ("trajectory", ".png")):
        head = ["--walk", "random", "--duration", "1"] if command == "synth" \
            else ["flute/flute_064_v080_long.wav"]
        proc = run_in_process(capsys, command, *head, "--atlas", atlas_dir, "-o",
                              tmp_path / (long + suffix))
        assert proc.returncode == 0 and (tmp_path / (long + suffix)).stat().st_size > 1000, proc


# -- in the web API: a path drawn on the page, "mosaic this" ---------------------------------------


@pytest.fixture(scope="module")
def web(library):
    import warnings

    from soundatlas.web import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(library / ".soundatlas"))


def _wav(response) -> tuple[np.ndarray, int]:
    import io

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    y, sr = sf.read(io.BytesIO(response.content), dtype="float32")
    assert sr == int(response.headers["x-sample-rate"])
    return y, sr


def test_web_synth_renders_the_same_audio_as_the_library_call(web, atlas, index):
    ids = [r.id for r in atlas.samples()][::12][:4]
    r = web.post("/api/models/default/synth", json={"ids": ids, "durations": [0.5, 1.0, 0.5, 1.0],
                                                     "glide": False, "format": "float"})
    y, sr = _wav(r)
    model = atlas.model("default")
    pts = np.stack([atlas.points(model.id)[1][list(atlas.points(model.id)[0]).index(i)]
                    for i in ids])
    direct = synth.render(atlas, None, synth.MapPath(pts, [0.5, 1.0, 0.5, 1.0]), sr=sr, index=index)
    np.testing.assert_array_equal(y, direct.y)  # the same render, byte for byte
    summary = json.loads(r.headers["x-render"])
    assert summary["n_grains"] == int(r.headers["x-grains"]) == len(direct.grains)
    assert summary["hold"] == "advance"
    r = web.post("/api/models/default/synth", json={"ids": ids, "durations": [0.5, 1.0, 0.5, 1.0],
                                                     "glide": False, "format": "float",
                                                     "hold": "repeat"})
    reference = synth.render(atlas, None, synth.MapPath(pts, [0.5, 1.0, 0.5, 1.0]), sr=sr,
                             index=index, hold="repeat")
    np.testing.assert_array_equal(_wav(r)[0], reference.y)
    assert not np.array_equal(reference.y, direct.y)  # the held points sound otherwise
    assert abs(float(r.headers["x-duration"]) - 3.0) < 1e-3
    # the same path as coordinates, gliding: the length still follows the durations
    r = web.post("/api/models/default/synth", json={"points": pts.tolist(), "duration": 0.25})
    y, sr = _wav(r)
    assert abs(len(y) - 1.0 * sr) <= 1


def test_web_synth_excludes_and_never_writes_the_atlas(library, atlas, tmp_path):
    import shutil
    import warnings

    from soundatlas.web import create_app

    copy = tmp_path / "atlas"
    shutil.copytree(library / ".soundatlas", copy)
    shutil.rmtree(copy / "cache", ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(create_app(copy))
    flutes = [r.id for r in atlas.samples() if r.path.startswith("flute/")]
    tubas = [r.id for r in atlas.samples() if r.path.startswith("tuba/")]
    r = client.post("/api/models/default/synth", json={"ids": flutes[:3], "exclude": flutes})
    _wav(r)
    summary = json.loads(r.headers["x-render"])
    assert summary["n_excluded"] == len(flutes)
    assert summary["sample_ids"] and set(summary["sample_ids"]) <= set(tubas)
    assert len(summary["sample_ids"]) == summary["n_samples_used"]
    assert not (copy / "cache").exists() or not list((copy / "cache").iterdir())
    r = client.post("/api/models/default/synth", json={"ids": flutes[:1], "exclude": flutes + tubas})
    assert r.status_code == 409 and "excluded" in r.json()["error"]


@pytest.mark.parametrize("body, status, words", [
    ({}, 400, "either 'points' or 'ids'"),
    ({"ids": [1], "points": [[0, 0, 0]]}, 400, "either 'points' or 'ids'"),
    ({"ids": []}, 400, "1 to 10000 points"),
    ({"points": [[0, 0]]}, 400, "3 coordinates"),
    ({"ids": [999999]}, 404, "sample 999999 has no point"),
    ({"ids": [1, 2], "durations": [1.0]}, 400, "1 durations for 2 points"),
    ({"ids": [1], "duration": 400}, 400, "at most 300 s"),
    ({"ids": [1], "grain": 20}, 400, "grain=20.0 must be between"),
    ({"ids": [1], "overlap": 0.99}, 400, "overlap=0.99"),
    ({"ids": [1], "exclude": [424242]}, 400, "no sample with id 424242"),
    ({"ids": [1], "format": "mp3"}, 422, "format"),
    ({"ids": [1], "hold": "loop"}, 422, "hold"),
    ({"points": [[0, 0, float("nan")]]}, 400, "not finite"),
    ({"points": [[0, 0, 0]], "durations": [-1]}, 400, "durations[0] = -1 must be positive"),
    ({"points": [[0, 0, 0]], "durations": [1e-9]}, 400, "the least is 0.01 s"),  # one sample
])
def test_web_synth_refuses_bad_requests_with_a_message(web, body, status, words):
    import math

    payload = json.dumps(body, allow_nan=True) if any(
        isinstance(x, float) and math.isnan(x) for p in body.get("points", []) for x in p) else None
    r = (web.post("/api/models/default/synth", content=payload,
                  headers={"content-type": "application/json"}) if payload
         else web.post("/api/models/default/synth", json=body))
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert web.post("/api/models/nope/synth", json={"ids": [1]}).status_code == 404


def test_web_mosaic_rebuilds_an_upload_without_its_own_grains(web, library, atlas):
    target = library / "flute" / "flute_066_v080_long.wav"
    data = target.read_bytes()
    r = web.post("/api/models/default/mosaic", files={"file": ("mine.wav", data, "audio/wav")})
    y, sr = _wav(r)
    assert r.headers["x-self-excluded"] == "1"  # the same content is in the library
    assert "mosaic-mine.wav" in r.headers["content-disposition"]
    assert abs(len(y) / sr - sf.info(target).duration) < 0.01
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) > 0.01  # it sounds
    r = web.post("/api/models/default/mosaic?exclude_self=false",
                 files={"file": ("mine.wav", data, "audio/wav")})
    assert r.status_code == 200 and r.headers["x-self-excluded"] == "0"
    r = web.post("/api/models/default/mosaic", files={"file": ("notes.wav", b"not audio at all")})
    assert r.status_code == 400 and "notes.wav" in r.json()["error"]
    r = web.post("/api/models/default/mosaic?grain=0", files={"file": ("mine.wav", data)})
    assert r.status_code == 400 and "grain" in r.json()["error"]


def test_web_wrong_renders_are_answered_at_once_not_queued(library, atlas):
    """A wrong synth or mosaic request (parameters, model, sample, an upload that is not audio)
    is answered while another render holds the slot, takes no place in the queue and is not
    counted as a render."""
    import threading

    from soundatlas.web import create_app

    target = (library / "flute" / "flute_066_v080_long.wav").read_bytes()
    app = create_app(library / ".soundatlas", render_queue=0)
    client = _client_of(app)
    wrong = [
        ("synth", {"json": {"ids": []}}, 400, "1 to 10000 points"),
        ("synth", {"json": {"ids": [1], "grain": 20}}, 400, "grain=20.0"),
        ("synth", {"json": {"ids": [999999]}}, 404, "sample 999999"),
        ("synth", {"json": {"ids": [1], "exclude": [424242]}}, 400, "424242"),
        ("synth", {"json": {"points": [[0, 0]]}}, 400, "3 coordinates"),
        ("mosaic?grain=0", {"files": {"file": ("a.wav", target)}}, 400, "grain"),
        ("mosaic", {"files": {"file": ("notes.wav", b"not audio at all")}}, 400, "notes.wav"),
    ]
    answers = {}

    def ask():
        for path, kwargs, *_ in wrong:
            answers[path, str(kwargs)[:60]] = client.post(f"/api/models/default/{path}", **kwargs)
        for path in ("synth", "mosaic"):
            kwargs = {"json": {"ids": [1]}} if path == "synth" else {
                "files": {"file": ("a.wav", target)}}
            answers["nope", path] = client.post(f"/api/models/nope/{path}", **kwargs)

    with app.state.web.render_lock:  # as if a long render were running
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        asker.join(60)
        assert not asker.is_alive(), "a wrong request waited for the render slot"
        status = client.get("/api/renders").json()
    for path, kwargs, code, words in wrong:
        r = answers[path, str(kwargs)[:60]]
        assert r.status_code == code and words in r.json()["error"], (path, r.text)
    for path in ("synth", "mosaic"):
        assert answers["nope", path].status_code == 404
    assert {k: status[k] for k in ("running", "waiting", "failed", "refused")} == dict.fromkeys(
        ("running", "waiting", "failed", "refused"), 0)


def _client_of(app):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app)


# -- reading only the grains ----------------------------------------------------------------------


def test_grains_read_as_spans_equal_grains_cut_from_whole_files(tmp_path):
    """Every way a grain can fall (inside, over either end, longer than the file, a stereo file)
    gives the very samples, fades included, that cutting the whole decoded file gives."""
    from types import SimpleNamespace

    sr = 8000
    rng = np.random.default_rng(0)
    files = {"long.wav": rng.uniform(-0.5, 0.5, (3 * sr, 1)),
             "stereo.flac": rng.uniform(-0.5, 0.5, (2 * sr, 2)),
             "short.wav": rng.uniform(-0.5, 0.5, (int(0.3 * sr), 1))}
    for name, y in files.items():
        sf.write(tmp_path / name, y.astype(np.float32), sr, subtype="PCM_16")
    spans = synth.AudioCache(tmp_path, sr, margin=0.25)
    whole = synth.AudioCache(tmp_path, sr, margin=0.25, spans=False)
    n = int(0.5 * sr)
    for name, y in files.items():
        rec = SimpleNamespace(path=name, duration=min(len(y) / sr, 1.5))  # analysed: <= 1.5 s
        for start in (-n, -10, 0, 7, 3000, 10_000, 12_000 - n + 3, 12_000, 40_000):
            np.testing.assert_array_equal(spans.grain(rec, start, n), whole.grain(rec, start, n),
                                          err_msg=f"{name} from {start}")
    assert spans.n_decoded == whole.n_decoded == 3


def test_a_render_reads_only_its_grains_and_sounds_the_same(atlas, index):
    rows = np.arange(0, len(index), len(index) // 6)[:6]
    path = synth.MapPath(index.points[rows], np.full(6, 0.5))
    spans = synth.AudioCache(atlas.library, 44100)
    whole = synth.AudioCache(atlas.library, 44100, spans=False)
    a = synth.render(atlas, None, path, index=index, cache=spans)
    b = synth.render(atlas, None, path, index=index, cache=whole)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.n_decoded == b.n_decoded == a.n_samples_used
    assert spans.frames_read < 0.6 * whole.frames_read, (spans.frames_read, whole.frames_read)


def _web_client(atlas_dir):
    import warnings

    from soundatlas.web import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(atlas_dir))


def test_web_renders_follow_a_library_indexed_again_while_serving(library, tmp_path):
    """Remove one file and add another, index and embed again (the same number of samples):
    the running server's frame index and points follow, and renders keep working."""
    import shutil

    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas
    from soundatlas.indexing import index_library

    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    client = _web_client(lib / ".soundatlas")
    first = client.post("/api/models/default/synth", json={"ids": [1, 2, 3]})
    assert first.status_code == 200
    sorted((lib / "flute").glob("*.wav"))[0].unlink()
    t = np.arange(44100) / 44100
    sf.write(lib / "tuba" / "new.wav", (0.3 * np.sin(2 * np.pi * 110 * t)).astype(np.float32),
             44100)
    index_library(lib, n_jobs=1)
    with Atlas.open(lib / ".soundatlas", write=True) as a:
        artifact, reg = resolve_model(a, "default")
        embed_atlas(a, artifact, reg.id)
        ids = [r.id for r in a.samples()]
    r = client.post("/api/models/default/synth", json={"ids": ids[-3:]})
    assert r.status_code == 200, r.text
    assert set(json.loads(r.headers["x-render"])["sample_ids"]) <= set(ids)
    assert client.get(f"/api/models/default/neighbours/{ids[-1]}").status_code == 200


@pytest.mark.parametrize("body, status, words", [
    ({"points": [[1e160, 0, 0]]}, 400, "too far outside the map"),
    # a glide between two far points overflows between them: it was a 500
    ({"points": [[1e308, 1e308, 1e308], [-1e308, 0, 0]], "duration": 0.2}, 400,
     "too far outside the map"),
    ({"points": [[0, 0, 0], [0, 0]]}, 400, "3 coordinates"),
    ({"ids": [1], "exclude": [2**70]}, 400, f"no sample with id {2**70}"),
    ({"ids": [2**70]}, 404, "has no point"),
])
def test_web_synth_out_of_range_input_is_a_clear_error(web, body, status, words):
    r = web.post("/api/models/default/synth", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_web_render_of_a_model_with_any_name_downloads_under_that_name(library, tmp_path):
    import shutil
    from urllib.parse import quote

    copy = tmp_path / "atlas"
    shutil.copytree(library / ".soundatlas", copy)
    with Atlas.open(copy, write=True) as a:
        reg = a.model("default")
        a.conn.execute("UPDATE models SET name = ? WHERE id = ?", ('模型 "x"', reg.id))
        a.conn.commit()
    client = _web_client(copy)
    name = '模型 "x"'
    r = client.post(f"/api/models/{quote(name)}/synth", json={"ids": [1]})
    assert r.status_code == 200, r.text
    disposition = r.headers["content-disposition"]
    assert disposition.isascii() and 'filename="path-____x_.wav"' in disposition
    assert "filename*=UTF-8''" + quote('path-模型 "x".wav', safe="") in disposition


def test_the_cli_refuses_a_path_far_outside_the_map(library, tmp_path):
    path = tmp_path / "far.json"
    path.write_text(json.dumps({"points": [[1e200, 0, 0]], "durations": [1.0]}))
    proc = run_cli("synth", "--atlas", library / ".soundatlas", "--path", path, "--output",
                   tmp_path / "o.wav")
    assert proc.returncode == 1 and "too far outside the map" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_trajectories_in_bulk_equal_one_at_a_time(atlas, index):
    ids = [r.id for r in atlas.samples()]
    bulk = atlas.trajectories(index.model_id, ids + [10**9, 2**70])  # unknown ids: left out
    assert sorted(bulk) == ids
    for sid in ids[::7]:
        np.testing.assert_array_equal(bulk[sid], atlas.trajectory(index.model_id, sid))


def test_render_stops_at_the_next_grain_once_cancelled(atlas, index):
    """synth.cancellable: a render whose caller no longer wants it raises RenderCancelled
    (the server passes "the client has disconnected")."""
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 20  # wanted for 20 grains, then not

    path = synth.MapPath(index.points[:1].astype(np.float64), np.array([30.0]))
    with synth.cancellable(cancelled), pytest.raises(synth.RenderCancelled):
        synth.render(atlas, None, path, index=index)
    assert len(asked) == 21
    result = synth.render(atlas, None, path, index=index)  # outside the block: not asked
    assert result.duration == pytest.approx(30.0) and len(asked) == 21


def _raw_post(server, path: str, body: dict):
    """POST ``body`` on a socket of its own, the answer not yet read (close it to hang up)."""
    import json
    import socket

    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    return sock


def test_web_renders_queue_refuse_beyond_the_queue_and_stop_when_the_client_goes(library, atlas):
    """One render runs, `render_queue` wait, one more is refused 503 with Retry-After; a
    client that hangs up stops its render, running or waiting, and the next one then runs."""
    import urllib.error

    from soundatlas.web import create_app
    from soundatlas.web.server import ThreadedServer

    model = atlas.models()[0].name
    sid = int(atlas.sample_ids()[0])
    url = f"/api/models/{model}/synth"
    # 300 s of 10 ms grains at 95 % overlap: 600,000 grains, far longer than the test's steps
    endless = {"ids": [sid], "duration": 300, "grain": 0.01, "overlap": 0.95}
    short = {"ids": [sid], "duration": 0.5}
    app = create_app(library / ".soundatlas", render_queue=1)
    with ThreadedServer(app) as server:
        running = _raw_post(server, url, endless)
        renders_until(server, running=1)
        waiting = _raw_post(server, url, short)
        renders_until(server, running=1, waiting=1)
        with pytest.raises(urllib.error.HTTPError) as refused:
            server.request(url, body=short)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "5"
        assert "busy rendering" in refused.value.read().decode()
        running.close()  # the client of the long render hangs up: it stops
        renders_until(server, cancelled=1, refused=1)
        answer = b""
        while chunk := waiting.recv(65536):  # the waiting render ran, and answered
            answer += chunk
        waiting.close()
        assert answer.startswith(b"HTTP/1.1 200") and b"audio/wav" in answer
        renders_until(server, running=0, waiting=0, completed=1, cancelled=1)
        # a client that hangs up while its render waits: it leaves the queue
        with app.state.web.render_lock:  # as if a render were running
            gone = _raw_post(server, url, short)
            renders_until(server, waiting=1)
            gone.close()
            renders_until(server, waiting=0, cancelled=2)
        assert server.get("/api/renders") == {
            "running": 0, "waiting": 0, "completed": 1, "cancelled": 2, "refused": 1,
            "failed": 0, "max_running": 1, "max_waiting": 1}
