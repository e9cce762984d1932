"""Tempo and key of loops (soundatlas.rhythm): rendered loops at known tempo and key get the
labels `tempo` and `key` from `index`, one-shots and noise get none, and a label source wins
over what the audio says."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import downgrade_schema, write_tone
from soundatlas.atlas import SCHEMA_VERSION, Atlas
from soundatlas.demo.loops import PROGRAMS, loop_events
from soundatlas.demo.render import NoteSynth
from soundatlas.indexing import index_library
from soundatlas.rhythm import estimate_tempo, loop_labels, relative_key


@pytest.fixture(scope="module")
def loops():
    """Two FluidR3 loops at 16 kHz: (tempo, key) -> samples."""
    out = {}
    with NoteSynth(sample_rate=16000) as synth:
        for tempo, key in ((128.0, "E major"), (75.0, "D# minor")):
            events, seconds = loop_events(tempo, key)
            out[(tempo, key)] = synth.render_events(events, seconds, PROGRAMS)
    return out


def test_a_loop_gives_its_tempo_within_2_percent_and_its_key(loops):
    for (tempo, key), y in loops.items():
        labels = loop_labels(y, 16000)
        assert abs(float(labels["tempo"]) / tempo - 1) < 0.02, (tempo, labels)
        assert labels["key"] == key


def test_a_two_bar_loop_of_4_s_gets_its_tempo():
    """Eight beats, of which the tracker finds seven (not the one at 0 s): the rule of eight
    gave two-bar loops no tempo at all."""
    with NoteSynth(sample_rate=16000) as synth:
        events, seconds = loop_events(120.0, "C major", bars=2)
        y = synth.render_events(events, seconds, PROGRAMS)
    assert len(y) >= 4 * 16000
    assert abs(estimate_tempo(y, 16000) / 120 - 1) < 0.02
    labels = loop_labels(y, 16000)  # its I-IV is also V-I of F major: no key from two bars
    assert abs(float(labels["tempo"]) / 120 - 1) < 0.02 and "key" not in labels


def test_one_shots_and_noise_get_no_tempo():
    sr = 16000
    t = np.arange(2 * sr) / sr
    assert loop_labels(np.sin(2 * np.pi * 440 * t) * np.exp(-t), sr) == {}  # under 4 s
    noise = np.random.default_rng(0).standard_normal(8 * sr).astype(np.float32) * 0.1
    assert estimate_tempo(noise, sr) is None and loop_labels(noise, sr) == {}


def test_a_single_ringing_hit_gets_no_tempo_however_even_its_shimmer():
    """A cymbal or bell of 4 s or more is one hit: its shimmer (here noise decaying by 30 dB,
    its level swelling 2.33 times a second) gave the beat tracker 8 even "beats" (140 BPM)
    until the level had to hold too."""
    sr = 16000
    t = np.arange(int(4.5 * sr)) / sr
    shimmer = 1 + 0.8 * np.sin(2 * np.pi * 2.33 * t)
    hit = (np.random.default_rng(0).standard_normal(len(t)) * np.exp(-t) * shimmer * 0.2)
    hit = hit.astype(np.float32)
    assert estimate_tempo(hit, sr) is None and loop_labels(hit, sr) == {}
    # the same swell at a steady level is a pulse, and keeps its tempo
    steady = (np.random.default_rng(0).standard_normal(len(t)) * shimmer * 0.05)
    assert abs(estimate_tempo(steady.astype(np.float32), sr) / 140 - 1) < 0.02


def test_relative_keys():
    assert relative_key("A minor") == "C major" and relative_key("C major") == "A minor"
    assert relative_key("D# minor") == "F# major"


def test_index_labels_loops_and_a_label_source_wins(loops, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (tempo, key), y = next(iter(loops.items()))
    sf.write(lib / "loop.wav", y, 16000, subtype="PCM_16")
    sf.write(lib / "named.wav", loops[(75.0, "D# minor")], 16000, subtype="PCM_16")
    write_tone(lib / "hit.wav", 220.0, seconds=1.0)
    (lib / "metadata.csv").write_text("path,key\nnamed.wav,my own key\n")
    index_library(lib, n_jobs=1)
    with Atlas.open(lib / ".soundatlas") as atlas:
        by_path = {r.path: atlas.sample_labels(r.id) for r in atlas.samples()}
    assert abs(float(by_path["loop.wav"]["tempo"]) / tempo - 1) < 0.02
    assert by_path["loop.wav"]["key"] == key
    assert "tempo" not in by_path["hit.wav"] and "key" not in by_path["hit.wav"]
    assert by_path["named.wav"]["key"] == "my own key"  # the manifest is more explicit
    assert "tempo" in by_path["named.wav"]
    downgrade_schema(lib / ".soundatlas", 6)  # an atlas from before: read, then migrated
    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.audio_labels_of(atlas.sample_ids().tolist()) == {}
    index_library(lib, n_jobs=1)
    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.schema_version == SCHEMA_VERSION


def test_search_filters_by_a_tempo_range_and_a_key_with_its_relative(tmp_path):
    import warnings

    from soundatlas.web import create_app

    lib = tmp_path / "lib"
    with NoteSynth(sample_rate=16000) as synth:
        for name, tempo, key in (("a", 90.0, "C minor"), ("b", 120.0, "D# major"),
                                 ("c", 90.0, "F minor")):
            events, seconds = loop_events(tempo, key)
            lib.mkdir(exist_ok=True)
            sf.write(lib / f"{name}.wav", synth.render_events(events, seconds, PROGRAMS),
                     16000, subtype="PCM_16")
    write_tone(lib / "hit.wav", 220.0)
    (lib / "metadata.csv").write_text("path,key\nhit.wav,Bb minor\n")  # a manifest's spelling
    index_library(lib, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(create_app(lib / ".soundatlas"))
    with Atlas.open(lib / ".soundatlas") as atlas:
        ids = {r.path: r.id for r in atlas.samples()}

    def found(**params):
        r = client.get("/api/samples", params=params)
        assert r.status_code == 200, r.text
        return {p for p, i in ids.items() if i in r.json()["ids"]}

    assert found(tempo="85-125") == {"a.wav", "b.wav", "c.wav"}
    assert found(tempo="100-200") == {"b.wav"}
    assert found(key="C minor") == {"a.wav"}
    assert found(key="C minor", relative="true") == {"a.wav", "b.wav"}
    assert found(tempo="85-95", key="F minor") == {"c.wav"}
    # keys as people and other tools write them, on either side
    assert found(key="Eb major") == {"b.wav"} and found(key="cm") == {"a.wav"}
    assert found(key="A#  minor") == found(key="Bbm") == {"hit.wav"}
    for params, message in (({"tempo": "fast"}, "MIN-MAX"), ({"tempo": "120-90"}, "MIN <= MAX"),
                            ({"tempo": "nan-nan"}, "MIN <= MAX"), ({"tempo": "0-inf"}, "MIN"),
                            ({"key": "H minor"}, "a note")):
        r = client.get("/api/samples", params=params)
        assert r.status_code == 400 and message in r.json()["error"]
