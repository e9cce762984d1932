"""Kits (soundatlas.kits and POST /api/kits/export): the pattern as a standard MIDI file that a
MIDI library reads back, General MIDI drum notes from the lanes' labels, and clear refusals."""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import mido
import pytest

from soundatlas.errors import ParameterError
from soundatlas.kits import CLASS_NOTES, Kit, lane_notes, pattern_midi


def _kit(**kw):
    base = {"name": "groove", "tempo": 96, "swing": 0.5, "lanes": [
        {"id": 1, "steps": [i % 4 == 0 for i in range(16)], "volume": 1.0},
        {"id": 2, "steps": [i % 8 == 4 for i in range(16)], "volume": 0.5},
        {"id": 3, "steps": [True] * 16, "volume": 0.25}]}
    return Kit.from_dict({**base, **kw})


def _notes(data: bytes):
    mid = mido.MidiFile(file=io.BytesIO(data))
    now, out, tempo = 0, [], None
    for msg in mid.tracks[0]:
        now += msg.time
        if msg.type == "set_tempo":
            tempo = msg.tempo
        if msg.type == "note_on":
            out.append((now, msg.channel, msg.note, msg.velocity))
    return mid, tempo, out


def test_the_pattern_is_a_midi_file_of_one_bar_at_the_kits_tempo():
    kit = _kit()
    notes = lane_notes([{"drum": "acoustic_bass_drum", "drum_class": "kick"},
                        {"drum_class": "snare"}, {"instrument": "flute"}])
    assert notes == [(9, 35), (9, CLASS_NOTES["snare"]), (0, 60)]
    mid, tempo, hits = _notes(pattern_midi(kit, notes))
    assert mid.type == 0 and mid.ticks_per_beat == 480
    assert tempo == mido.bpm2tempo(96)
    assert len(hits) == 4 + 2 + 16
    assert [t for t, _, n, _ in hits if n == 35] == [0, 480, 960, 1440]  # every beat
    assert [t for t, _, n, _ in hits if n == 38] == [480, 1440]
    assert {v for _, _, n, v in hits if n == 60} == {32}  # volume 0.25
    assert {v for _, _, n, v in hits if n == 35} == {127}
    assert sum(m.time for m in mid.tracks[0]) == 1920  # exactly one 4/4 bar
    # swing: odd sixteenths start late, by (swing - 0.5) x 2 sixteenths
    _, _, swung = _notes(pattern_midi(_kit(swing=0.75), notes))
    starts = sorted({t for t, _, n, _ in swung if n == 60})
    assert starts[:4] == [0, 120 + 60, 240, 360 + 60]
    # a lane the page plays at volume 0 is silent in the pattern too (it sounded at velocity 1)
    muted = _kit(lanes=[{**lane, "volume": 0.0} if lane["id"] == 3 else lane
                        for lane in _kit().to_dict()["lanes"]])
    _, _, hits = _notes(pattern_midi(muted, notes))
    assert not [h for h in hits if h[2] == 60] and len(hits) == 4 + 2


def test_two_lanes_without_a_drum_get_consecutive_notes():
    assert lane_notes([{}, {"instrument": "x"}, {"drum_class": "not-a-class"}]) == [
        (0, 60), (0, 61), (0, 62)]


@pytest.mark.parametrize("change, message", [
    ({"lanes": []}, "lanes"),
    ({"lanes": [{"id": 1, "steps": [True] * 15}]}, "16 true or false"),
    ({"lanes": [{"id": "1", "steps": [True] * 16}]}, "sample id"),
    ({"lanes": [{"id": 1, "steps": [True] * 16, "volume": 2}]}, "volume"),
    ({"lanes": [{"id": i, "steps": [True] * 16} for i in range(17)]}, "1 to 16"),
    ({"tempo": 5}, "tempo"),
    ({"swing": 0.9}, "swing"),
    ({"name": ""}, "name"),
])
def test_a_bad_kit_is_refused_naming_what_is_wrong(change, message):
    with pytest.raises(ParameterError, match=message):
        _kit(**change)


def test_the_api_exports_samples_pattern_and_a_kit_json_that_round_trips(tone_library):
    from soundatlas.atlas import Atlas
    from soundatlas.indexing import index_library
    from soundatlas.web import create_app

    index_library(tone_library, n_jobs=1)
    with Atlas.open(tone_library / ".soundatlas") as atlas:
        records = atlas.samples()[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(create_app(tone_library / ".soundatlas"))
    body = _kit().to_dict()
    for lane, r in zip(body["lanes"], records):
        lane["id"] = r.id
    r = client.post("/api/kits/export", json=body)
    assert r.status_code == 200, r.text
    assert 'filename="groove.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = z.namelist()
        assert names == [f"samples/{i:02d}-{rec.path.split('/')[-1]}"
                         for i, rec in enumerate(records, start=1)] + ["pattern.mid", "kit.json"]
        assert z.read(names[0]) == (tone_library / records[0].path).read_bytes()
        _, _, hits = _notes(z.read("pattern.mid"))
        described = json.loads(z.read("kit.json"))
    assert len(hits) == 22 and {n for _, _, n, _ in hits} == {60, 61, 62}  # no drum labels
    assert [lane["path"] for lane in described["lanes"]] == [rec.path for rec in records]
    assert Kit.from_dict(described) == Kit.from_dict(body)  # imports back as it was
    bad = client.post("/api/kits/export", json={**body, "tempo": 1000})
    assert bad.status_code == 400 and "tempo" in bad.json()["error"]
    body["lanes"][0]["id"] = 999999
    missing = client.post("/api/kits/export", json=body)
    assert missing.status_code == 404 and "999999" in missing.json()["error"]


@pytest.mark.parametrize("name, in_midi", [("Kick ☃", "Kick ?"), ("日本", "??"),
                                           ("Café", "Café")])
def test_a_name_outside_latin1_names_the_midi_track_and_stays_whole_in_kit_json(
        tone_library, name, in_midi):
    """MIDI text is Latin-1: the track name keeps what it can hold, kit.json the full name."""
    from soundatlas.atlas import Atlas
    from soundatlas.indexing import index_library
    from soundatlas.web import create_app

    mid, _, _ = _notes(pattern_midi(_kit(name=name), [(0, 60)] * 3))
    assert [m.name for m in mid.tracks[0] if m.type == "track_name"] == [in_midi]
    index_library(tone_library, n_jobs=1)
    with Atlas.open(tone_library / ".soundatlas") as atlas:
        ids = [r.id for r in atlas.samples()[:3]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(create_app(tone_library / ".soundatlas"))
    body = _kit(name=name).to_dict()
    for lane, i in zip(body["lanes"], ids):
        lane["id"] = i
    r = client.post("/api/kits/export", json=body)
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert json.loads(z.read("kit.json"))["name"] == name
        mid, _, hits = _notes(z.read("pattern.mid"))
    assert [m.name for m in mid.tracks[0] if m.type == "track_name"] == [in_midi]
    assert len(hits) == 22
