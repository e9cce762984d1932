"""The batched CQT against the reference definition, librosa.cqt (docs/DESIGN.md §1).

``PAPER_CQT`` (the multirate kernel) is held to librosa on every frame, edges included, for pure
tones in every octave, clicks and sharp onsets; the folded kernel (``CQTParams()``, what params
stored without a kernel mean) must keep giving the features that models trained on it (the
shipped model before 2026-12-03, and those users trained then) read.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

librosa = pytest.importorskip("librosa")

from soundatlas import cqt as cqt_module  # noqa: E402
from soundatlas.cqt import PAPER_CQT, CQTParams, cqt, cqt_batch, n_frames  # noqa: E402
from soundatlas.errors import ParameterError  # noqa: E402

SR = 16000
FOLDED = CQTParams()


def reference(y: np.ndarray, **kw) -> np.ndarray:
    """|librosa.cqt| as (frames x bins), the reference definition."""
    kw = {"hop_length": 800, "fmin": 27.5, "n_bins": 192, "bins_per_octave": 24, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "n_fft=... is too large" on short clips
        C = librosa.cqt(y, sr=SR, **kw)
    return np.abs(C).T


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def assert_matches_librosa(y: np.ndarray, *, r_min: float = 0.995, edge_max: float = 0.1):
    """Correlation with librosa's log(50|C|+1) over every frame and over the first two and last
    two frames alone (when they hold anything), and the largest difference on those edge frames
    (log units)."""
    ours, ref = cqt(y), np.log1p(50 * reference(y))
    assert ours.shape == ref.shape
    assert corr(ours, ref) >= r_min
    edges = sorted({0, 1, len(ref) - 2, len(ref) - 1} & set(range(len(ref))))
    if len(ref) > 2 and ref[edges].max() > 0.1:
        assert corr(ours[edges], ref[edges]) >= r_min
    assert np.abs(ours[edges] - ref[edges]).max() <= edge_max


@pytest.mark.parametrize("k", [0, 7, 24, 41, 60, 83, 96, 118, 131, 150, 167, 180, 191])
def test_tone_on_bin_centre_same_peak_within_half_db(k):
    f = PAPER_CQT.freqs[k]
    t = np.arange(int(3.0 * SR)) / SR
    y = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)
    ours, ref = cqt(y, compressed=False), reference(y)
    assert ours.shape == ref.shape
    middle = slice(10, -10)  # steady state, away from the edges
    assert np.all(ours[middle].argmax(axis=1) == k)
    assert np.all(ref[middle].argmax(axis=1) == k)
    db = 20 * np.log10(ours[middle, k] / ref[middle, k])
    assert np.max(np.abs(db)) < 0.5


def test_white_noise_correlates_and_frame_counts_match():
    rng = np.random.default_rng(1)
    for n in (16000, 40000, 40799, 40800, 97531):
        y = (0.1 * rng.standard_normal(n)).astype(np.float32)
        ours, ref = cqt(y), np.log1p(50 * reference(y))
        assert ours.shape == ref.shape == (1 + n // 800, 192)
        assert corr(ours, ref) >= 0.995


def test_rendered_notes_correlate(rendered_library_master):
    from soundatlas import audio

    paths = sorted(rendered_library_master.rglob("*.wav"))
    chosen = paths[:: max(1, len(paths) // 12)]
    ys = [audio.load(p, sr=SR).y for p in chosen]
    for y, ours in zip(ys, cqt_batch(ys)):
        ref = np.log1p(50 * reference(y))
        assert ours.shape == ref.shape
        assert corr(ours, ref) >= 0.995


@pytest.mark.parametrize("params", [PAPER_CQT, FOLDED], ids=["multirate", "folded"])
def test_a_clips_features_depend_on_that_clip_alone(params):
    """Bit for bit, a clip gives the same features alone, in a batch with clips of its own FFT
    size (more than one product's rows of them) and of others, in any order, and with any number
    of threads (a clip of 70 s gets threaded FFTs when it has threads): an atlas's features must
    not depend on how indexing batched its files."""
    rng = np.random.default_rng(2)
    lengths = [1, 80, 799, 800, 12345, 40000, 160000, 1_120_000, *[24000] * 20,
               *rng.integers(100, 50000, 12)]
    ys = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in lengths]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        alone = [cqt(y, params=params) for y in ys]
        for y, C in zip(ys, alone):
            assert C.shape == (n_frames(len(y)), 192) and C.dtype == np.float32
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            with threadpool_limits(n_threads):
                order = rng.permutation(len(ys))
                batched = cqt_batch([ys[i] for i in order], params=params)
            for C, i in zip(batched, order):
                assert np.array_equal(C, alone[i]), (
                    f"clip {i} ({lengths[i]} samples), {n_threads} thread(s): "
                    f"{int((C != alone[i]).sum())} values differ from the clip alone")
    finally:
        torch.set_num_threads(threads)


def test_silence_is_zero_and_compression_is_log50():
    assert np.all(cqt(np.zeros(8000, np.float32)) == 0)
    y = np.random.default_rng(3).standard_normal(8000).astype(np.float32)
    np.testing.assert_allclose(cqt(y), np.log1p(50 * cqt(y, compressed=False)), rtol=1e-5)


def test_bad_parameters_are_named():
    with pytest.raises(ParameterError, match="hop_length"):
        CQTParams(hop_length=0)
    with pytest.raises(ParameterError, match="sr/2"):
        CQTParams(n_bins=240)  # 10 octaves from 27.5 Hz pass the Nyquist frequency of 16 kHz
    with pytest.raises(ParameterError, match="1-D"):
        cqt_batch([np.zeros((2, 100))])
    with pytest.raises(ParameterError, match="kernel='fast'"):
        CQTParams(kernel="fast")


# --- the multirate kernel: librosa on every frame ------------------------------------------------


@pytest.mark.parametrize("octave", range(8))
def test_pure_sines_in_every_octave_match_librosa_first_and_last_frames_included(octave):
    """A bin centre and a frequency between bins in each octave; a clip ending on a frame centre
    and one that does not; a sine starting at zero and a cosine starting at its peak."""
    for offset in (5, 17.5):
        f = 27.5 * 2 ** ((24 * octave + offset) / 24)
        for n, phase in ((40000, 0.0), (40457, np.pi / 2)):
            y = (0.5 * np.sin(2 * np.pi * f * np.arange(n) / SR + phase)).astype(np.float32)
            assert_matches_librosa(y)


@pytest.mark.parametrize("n, positions", [
    (40000, (0, 1, 400, 799, 800, 20000, 39998, 39999)),
    (40457, (12345, 40456)),
    (32, (0, 16, 31)),  # audio.MIN_DURATION, 2 ms
    (80, (40,)),  # a 5 ms click
    (720, (0, 360, 719)),  # 45 ms
])
def test_clicks_match_librosa(n, positions):
    for p in positions:
        y = np.zeros(n, np.float32)
        y[p] = 1.0
        assert_matches_librosa(y)


def test_short_hats_match_librosa():
    rng = np.random.default_rng(4)
    for ms in (5, 17, 45):
        n = SR * ms // 1000
        y = (0.5 * rng.standard_normal(n) * np.exp(-np.arange(n) / (n / 4))).astype(np.float32)
        assert_matches_librosa(y)


@pytest.mark.parametrize("k", [6, 30, 54, 78, 102, 126, 150, 174])
def test_notes_with_a_sharp_onset_match_librosa_before_and_after_it(k):
    """A harmonic note (fundamental at bin k, partials while below 7 kHz) starting at full
    amplitude off the frame grid, decaying; the frames before the onset match too (no pre-echo
    beyond librosa's own)."""
    n, onset = 40000, 12345
    f0 = 27.5 * 2 ** (k / 24)
    t = np.arange(n - onset) / SR
    note = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 6) if h * f0 < 7000)
    y = np.zeros(n, np.float32)
    y[onset:] = 0.4 * note * np.exp(-3 * t)
    assert_matches_librosa(y)
    ours, ref = cqt(y), np.log1p(50 * reference(y))
    before = slice(0, onset // 800)
    assert np.abs(ours[before] - ref[before]).max() <= 0.1


def test_other_parameters_follow_librosa_too():
    """Not the paper's numbers: 12 bins per octave from 55 Hz, hop 512 (librosa downsamples
    early, by 4, before its first octave) and 5 octaves from 110 Hz at hop 441 (odd)."""
    rng = np.random.default_rng(5)
    y = (0.1 * rng.standard_normal(40000)).astype(np.float32)
    y[20000] += 1.0
    for kw in ({"hop_length": 512, "fmin": 55.0, "n_bins": 48, "bins_per_octave": 12},
               {"hop_length": 441, "fmin": 110.0, "n_bins": 60, "bins_per_octave": 12}):
        params = replace(PAPER_CQT, **kw)
        ours, ref = cqt(y, params=params), np.log1p(50 * reference(y, **kw))
        assert ours.shape == ref.shape
        assert corr(ours, ref) >= 0.999


def test_filters_are_librosas():
    """Each octave's sparsified filter spectra equal librosa's (its private builder)."""
    build = getattr(librosa.core.constantq, "__vqt_filter_fft", None)
    if build is None:
        pytest.skip("this librosa has no __vqt_filter_fft")
    freqs, Q = cqt_module._librosa_freqs(PAPER_CQT)
    for octave in cqt_module._plan(PAPER_CQT):
        ours = cqt_module._octave_basis(PAPER_CQT, octave) * np.sqrt(
            Q[octave.lo : octave.hi] * SR / freqs[octave.lo : octave.hi])[:, None]
        theirs, n_fft, _ = build(SR / octave.d, freqs[octave.lo : octave.hi], 1, 1,
                                 PAPER_CQT.sparsity, window="hann", gamma=0.0,
                                 dtype=np.complex64, alpha=1 / Q[octave.lo : octave.hi])
        theirs = theirs.toarray()
        assert n_fft == octave.n_fft
        np.testing.assert_array_equal(ours != 0, theirs != 0)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_per_frame_and_folded_octaves_compute_the_same(monkeypatch):
    """Octaves with long, overlapping frames are correlated in one FFT of the decimated clip; an
    FFT per frame (librosa's way) gives the same numbers (to the roll-off's ringing, which the
    longer zero tail that frames of 1,024 samples need moves a little)."""
    rng = np.random.default_rng(6)
    ys = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (3001, 40000)]
    ys.append(np.eye(1, 24000, 23999, dtype=np.float32)[0])
    default = cqt_batch(ys)
    monkeypatch.setattr(cqt_module, "_uses_frames", lambda octave: True)
    cqt_module._multirate_kernel.cache_clear()
    cqt_module._tail_and_top.cache_clear()
    try:
        for a, b in zip(default, cqt_batch(ys)):
            np.testing.assert_allclose(a, b, atol=5e-3)
    finally:
        cqt_module._multirate_kernel.cache_clear()
        cqt_module._tail_and_top.cache_clear()


# --- the folded kernel: the features the models trained on it read -------------------------------


def _folded_probe() -> np.ndarray:
    n = 24123
    t = np.arange(n) / SR
    y = 0.4 * np.sin(2 * np.pi * 440.0 * t) * np.exp(-2 * t)
    y[8000:] += 0.3 * np.sin(2 * np.pi * 61.7 * t[8000:])
    y[15000] += 0.8
    return y.astype(np.float32)


# log(50|C|+1) of _folded_probe() with the folded kernel at frames 0, 1, 10, 19, 29, 30 and bins
# 0, 30, 60, 75, 96, 120, 150, 191 (the kernel's output, rounded to 4 decimals)
FOLDED_PROBE = np.array([
    [1.1432, 1.3228, 1.6909, 2.0595, 5.1596, 1.4128, 0.5271, 0.1846],
    [1.2942, 1.2372, 1.2704, 0.9005, 5.7751, 0.0048, 0.0003, 0.0001],
    [2.1550, 5.0303, 2.2283, 1.9297, 4.8489, 1.3500, 1.0586, 0.8731],
    [1.1702, 1.5035, 0.8296, 0.9336, 3.9913, 0.6596, 0.0014, 0.0020],
    [2.4475, 4.8440, 1.0995, 0.1950, 3.0225, 0.0014, 0.0001, 0.0002],
    [2.4644, 5.0017, 1.6396, 1.1472, 2.6615, 0.3961, 0.0078, 0.0002],
])
PROBE_AT = np.ix_([0, 1, 10, 19, 29, 30], [0, 30, 60, 75, 96, 120, 150, 191])


def test_folded_kernel_still_gives_its_features():
    folded = cqt(_folded_probe(), params=FOLDED)
    assert folded.shape == (31, 192)
    np.testing.assert_allclose(folded[PROBE_AT], FOLDED_PROBE, atol=2e-3)
    multirate = cqt(_folded_probe())
    assert np.abs(multirate[PROBE_AT] - FOLDED_PROBE).max() > 0.1  # the kernel is a real choice


def test_params_stored_without_a_kernel_read_as_folded():
    stored = {k: v for k, v in PAPER_CQT.to_dict().items() if k != "kernel"}
    assert CQTParams(**stored) == FOLDED
    assert PAPER_CQT.kernel == "multirate" and PAPER_CQT.to_dict()["kernel"] == "multirate"
    assert FOLDED.differs_only_in_kernel(PAPER_CQT) and PAPER_CQT.differs_only_in_kernel(FOLDED)
    assert not PAPER_CQT.differs_only_in_kernel(PAPER_CQT)
    assert not FOLDED.differs_only_in_kernel(replace(PAPER_CQT, hop_length=400))


def test_shipped_model_reads_the_paper_cqt_with_the_multirate_kernel():
    from soundatlas.artifact import DEFAULT_MODEL, SHIPPED_MODELS, ModelArtifact

    assert ModelArtifact.load(SHIPPED_MODELS / DEFAULT_MODEL).cqt == PAPER_CQT


# --- atlases made with the folded kernel ---------------------------------------------------------


def _features(atlas) -> dict[str, np.ndarray]:
    return {r.path: atlas.features(r).astype(np.float32) for r in atlas.samples()}


def _expected(library, params) -> dict[str, np.ndarray]:
    from soundatlas import audio
    from soundatlas.atlas import FEATURE_DTYPE

    paths = sorted(p.relative_to(library).as_posix() for p in library.rglob("*.wav"))
    ys = [audio.load(library / p, sr=SR).y for p in paths]
    return {p: C.astype(FEATURE_DTYPE).astype(np.float32)
            for p, C in zip(paths, cqt_batch(ys, params=params))}


def test_an_atlas_keeps_its_kernel_and_refresh_features_brings_it_up_to_date(tmp_path):
    from conftest import make_tone_library
    from soundatlas.artifact import DEFAULT_MODEL, SHIPPED_MODELS, ModelArtifact
    from soundatlas.atlas import Atlas
    from soundatlas.embed import check_features
    from soundatlas.errors import AtlasError, SoundAtlasError
    from soundatlas.indexing import index_library

    lib = make_tone_library(tmp_path / "lib", n_per_folder=2)
    atlas_dir = tmp_path / "atlas"
    index_library(lib, atlas_dir=atlas_dir, params=FOLDED, n_jobs=1)
    shipped = ModelArtifact.load(SHIPPED_MODELS / DEFAULT_MODEL)
    # one network, said to be trained on each kernel's features
    older = ModelArtifact(name="older", config={**shipped.config, "cqt": FOLDED.to_dict()},
                          model=shipped.model)
    newer = ModelArtifact(name="newer", config={**shipped.config, "cqt": PAPER_CQT.to_dict()},
                          model=shipped.model)

    index_library(lib, atlas_dir=atlas_dir, n_jobs=1)  # a plain run keeps the atlas's kernel
    with Atlas.open(atlas_dir) as atlas:
        assert atlas.cqt_params == FOLDED
        assert _features(atlas).keys() == _expected(lib, FOLDED).keys()
        for path, F in _expected(lib, FOLDED).items():
            np.testing.assert_array_equal(_features(atlas)[path], F)
        check_features(atlas, older)
        with pytest.raises(SoundAtlasError) as refused:
            check_features(atlas, newer)
    command = f"soundatlas index {lib.resolve()} --atlas {atlas_dir.resolve()} --refresh-features"
    assert command in str(refused.value)
    with pytest.raises(AtlasError, match="--refresh-features"):
        index_library(lib, atlas_dir=atlas_dir, params=PAPER_CQT, n_jobs=1)

    # a refresh killed right after it began: the atlas says multirate and every sample is stale
    # (nothing embeds it); the next run, plain or not, analyses the stale ones and ends it
    with Atlas.open(atlas_dir, write=True) as atlas:
        atlas.start_feature_refresh(PAPER_CQT)
        assert len(atlas.stale_sample_ids()) == atlas.n_samples() == 6
        with pytest.raises(SoundAtlasError, match="--refresh-features"):
            check_features(atlas, newer)
    summary = index_library(lib, atlas_dir=atlas_dir, n_jobs=1)
    assert summary.n_indexed == 6 and summary.n_samples == 6
    with Atlas.open(atlas_dir) as atlas:
        assert atlas.cqt_params == PAPER_CQT
        assert atlas.feature_refresh_started() is None and not atlas.stale_sample_ids()
        for path, F in _expected(lib, PAPER_CQT).items():
            np.testing.assert_array_equal(_features(atlas)[path], F)
        check_features(atlas, newer)
        with pytest.raises(SoundAtlasError, match="trained on features of the 'folded'"):
            check_features(atlas, older)
    assert index_library(lib, atlas_dir=atlas_dir, n_jobs=1).n_indexed == 0

    # `map`: a new atlas gets the CQT of the model that embeds it; an existing one keeps its own
    from soundatlas.indexing import cqt_for_model

    assert cqt_for_model(lib, tmp_path / "new", None) == PAPER_CQT == shipped.cqt
    assert cqt_for_model(lib, tmp_path / "new", str(SHIPPED_MODELS / DEFAULT_MODEL)) == PAPER_CQT
    older.save(tmp_path / "older-model")
    assert cqt_for_model(lib, tmp_path / "new", str(tmp_path / "older-model")) == FOLDED
    assert cqt_for_model(lib, atlas_dir, None) is None
    assert cqt_for_model(lib, tmp_path / "new", "no-such-model") is None

    # the command itself, in one run
    other = tmp_path / "other"
    index_library(lib, atlas_dir=other, params=FOLDED, n_jobs=1)
    summary = index_library(lib, atlas_dir=other, n_jobs=1, refresh_features=True)
    assert summary.n_indexed == 6
    with Atlas.open(other) as atlas:
        assert atlas.cqt_params == PAPER_CQT and atlas.feature_refresh_started() is None
        for path, F in _expected(lib, PAPER_CQT).items():
            np.testing.assert_array_equal(_features(atlas)[path], F)


def test_cli_cqt_writes_frames_by_bins(tmp_path):
    from conftest import write_tone
    from soundatlas.cli import main

    wav = write_tone(tmp_path / "a.wav", 440.0, seconds=1.0, sr=22050)
    out = tmp_path / "a.npy"
    assert main(["cqt", str(wav), "--output", str(out)]) == 0
    C = np.load(out)
    assert C.shape == (21, 192) and C.dtype == np.float32
    # A4 = 440 Hz is bin 24 * log2(440 / 27.5) = 96
    assert int(np.median(C[2:-2].argmax(axis=1))) == 96


def test_cli_cqt_bad_file_one_line_exit_1(tmp_path, capsys):
    from soundatlas.cli import main

    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert main(["cqt", str(bad), "--output", str(tmp_path / "x.npy")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.wav" in err[0]


# --- the kernel cache ------------------------------------------------------------------------------

def test_a_library_of_many_lengths_builds_each_kernel_once():
    """One-shots of many lengths need many FFT sizes; a batch after batch of them must not build
    the same kernels again (a 16-kernel cache did: a third of indexing's time)."""
    cache = cqt_module._multirate_kernel
    cache.cache_clear()
    try:
        lengths = sorted({int(n) for n in np.geomspace(0.005 * SR, 2.0 * SR, 400)})
        sizes = {cqt_module._multirate_size(PAPER_CQT, n) for n in lengths}
        assert len(sizes) > 40  # the point: more sizes than the old cache held
        rng = np.random.default_rng(3)
        clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
        first = cqt_batch(clips)
        assert cache.builds == len(sizes)
        for batch in (clips[::-1][i : i + 32] for i in range(0, len(clips), 32)):
            cqt_batch(batch)  # batches as index makes them
        assert cache.builds == len(sizes)
        again = cqt_batch(clips)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
        for y, C in zip(clips[::37], first[::37]):  # each clip alone: a kernel of its own size
            np.testing.assert_allclose(cqt_batch([y])[0], C, atol=1e-5)
    finally:
        cache.cache_clear()  # 69 kernels: not for the rest of the session


def test_the_kernel_cache_keeps_to_its_budget():
    built = []

    def build(params, size):
        built.append(size)
        return np.zeros(size, np.uint8)  # a "kernel" of `size` bytes

    cache = cqt_module._KernelCache(build, budget=1000)
    for size in (400, 300, 200):
        cache(PAPER_CQT, size)
    cache(PAPER_CQT, 400)  # used again: now the most recent
    cache(PAPER_CQT, 500)  # 1,400 bytes: the least recently used go (300, then 200)
    assert built == [400, 300, 200, 500]
    cache(PAPER_CQT, 400)
    assert built == [400, 300, 200, 500]  # still held
    cache(PAPER_CQT, 300)
    assert built[-1] == 300 and cache.builds == 5
    cache(PAPER_CQT, 5000)  # larger than the budget alone: kept, the others go
    assert cache(PAPER_CQT, 5000) is cache(PAPER_CQT, 5000) and cache.builds == 6
    cache(PAPER_CQT, 400)
    assert cache.builds == 7
