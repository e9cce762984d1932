"""What the user makes (soundatlas.atlas.curation): tags, stars, notes and collections, keyed by
content so that they follow moved files, survive re-indexing, and read as labels."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from conftest import downgrade_schema, run_in_process, write_tone
from soundatlas.atlas import SCHEMA_VERSION, Atlas
from soundatlas.atlas.curation import parse_tag
from soundatlas.errors import ParameterError
from soundatlas.indexing import index_library


@pytest.fixture
def indexed(tone_library):
    index_library(tone_library, n_jobs=1)
    return tone_library


def _ids(atlas: Atlas) -> dict[str, int]:
    return {r.path: r.id for r in atlas.samples(atlas.sample_ids().tolist())}


def test_tags_stars_notes_and_collections_are_stored_and_read_back(indexed):
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        ids = _ids(atlas)
        a, b, c = ids["low/low_036.wav"], ids["low/low_037.wav"], ids["mid/mid_060.wav"]
        assert atlas.tag([a, b], add=["punchy", "mood:dark"]) == 4
        assert atlas.tag([a], add=["warm", "mood:bright"]) == 3  # bright replaces dark on a
        assert atlas.tag([a, b], add=["punchy"]) == 0  # there already
        assert atlas.star([a, c]) == 2 and atlas.star([c], starred=False) == 1
        atlas.set_note(b, "the one from the session")
        assert atlas.add_to_collection("kit", [c, a], create=True) == 2
        assert atlas.add_to_collection("kit", [a, b]) == 1  # a keeps its place
        cur = atlas.curation_of([a, b, c])
        assert cur[a] == {"starred": True, "tags": ["mood:bright", "punchy", "warm"],
                          "suggested": {}, "note": None, "collections": ["kit"]}
        assert cur[b]["tags"] == ["mood:dark", "punchy"]
        assert cur[b]["note"] == "the one from the session" and not cur[b]["starred"]
        assert cur[c] == {"starred": False, "tags": [], "suggested": {}, "note": None,
                          "collections": ["kit"]}
        assert [sid for sid, _ in atlas.collection_members("kit")] == [c, a, b]
        assert atlas.tag([a], remove=["mood:*", "warm"]) == 2
        assert atlas.curation_of([a])[a]["tags"] == ["punchy"]
        assert atlas.ids_with(tag="punchy") == {a, b} and atlas.ids_with(starred=True) == {a}
        assert atlas.ids_with(tag="punchy", collection="kit") == {a, b}
        atlas.rename_collection("kit", "drums")
        assert atlas.collections()[0]["name"] == "drums" and atlas.collections()[0]["n"] == 3
        assert atlas.remove_from_collection("drums", [c]) == 1
        atlas.delete_collection("drums")
        assert atlas.collections() == [] and atlas.curation_of([a])[a]["tags"] == ["punchy"]


def test_a_tag_or_collection_typed_composed_or_decomposed_is_one(indexed):
    composed, decomposed = "caf\u00e9", "cafe\u0301"  # 'café' typed, and from a macOS name
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        ids = _ids(atlas)
        a, b = ids["low/low_036.wav"], ids["mid/mid_060.wav"]
        atlas.tag([a], add=[composed, f"mood:{decomposed}"])
        assert atlas.tag([b], add=[decomposed, f"mood:{composed}"]) == 2
        assert atlas.curation_of([a, b])[a]["tags"] == atlas.curation_of([b])[b]["tags"]
        assert atlas.tag_counts()[0] == {composed: 2, f"mood:{composed}": 2}
        assert atlas.ids_with(tag=decomposed) == {a, b} == atlas.ids_with(tag=f"mood:{composed}")
        atlas.add_to_collection(decomposed, [a], create=True)
        assert atlas.add_to_collection(composed, [b]) == 1
        assert [c["name"] for c in atlas.collections()] == [composed]
        with pytest.raises(ParameterError, match="exists already"):
            atlas.create_collection(decomposed)
        # a tag and a collection stored decomposed before names were composed are found and
        # removed by either form
        atlas.conn.execute("UPDATE user_labels SET value = ? WHERE value = ?",
                           (decomposed, composed))
        atlas.conn.execute("UPDATE collections SET name = ?", (decomposed,))
        atlas.conn.commit()
        assert atlas.ids_with(tag=composed) == {a, b}
        assert atlas.ids_with(collection=composed) == {a, b}
        assert atlas.tag([a], remove=[composed, "mood:*"]) == 2
        assert atlas.curation_of([a])[a]["tags"] == []
        atlas.rename_collection(composed, "x")
        assert [c["name"] for c in atlas.collections()] == ["x"]


def test_tags_stored_decomposed_before_are_composed_and_merged_by_the_migration(indexed):
    """An atlas from before tags were composed may hold a tag in both forms on one sample
    (typed once, pasted from a macOS name once): schema 12 makes them one composed tag, and a
    decomposed one alone composed; the counts then show one tag."""
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    atlas_dir = indexed / ".soundatlas"
    with Atlas.open(atlas_dir, write=True) as atlas:
        ids = _ids(atlas)
        a, b = ids["low/low_036.wav"], ids["mid/mid_060.wav"]
        atlas.tag([a, b], add=[composed, "mood:dark"])
        atlas.add_to_collection("mix", [a], create=True)
        h = atlas.hashes_of([a, b])
        atlas.conn.execute("UPDATE user_labels SET value = ? WHERE hash = ? AND value = ?",
                           (decomposed, h[b], composed))  # b: decomposed alone
        atlas.conn.execute("INSERT INTO user_labels(hash, key, value, suggested, created)"
                           " VALUES (?, 'tag', ?, 0, 0)", (h[a], decomposed))  # a: both
        atlas.conn.execute("UPDATE collections SET name = ?", ("mi\u0301x",))
        atlas.conn.commit()
    downgrade_schema(atlas_dir, 11)
    with Atlas.open(atlas_dir) as atlas:  # read-only: not migrated, found by either form
        assert atlas.ids_with(tag=composed) == {a, b}
    with Atlas.open(atlas_dir, write=True) as atlas:
        assert atlas.schema_version == SCHEMA_VERSION
        assert atlas.tag_counts()[0] == {composed: 2, "mood:dark": 2}
        assert atlas.curation_of([a])[a]["tags"] == [composed, "mood:dark"]
        assert [c["name"] for c in atlas.collections()] == ["m\u00edx"]


def test_tags_are_labels_that_override_the_index_and_filter_searches(indexed):
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        ids = _ids(atlas)
        a, b, c = ids["low/low_036.wav"], ids["low/low_037.wav"], ids["high/high_084.wav"]
        assert atlas.labels("instrument")[a] == "low"
        atlas.tag([a], add=["instrument:bass", "dark", "warm"])
        atlas.tag([b, c], add=["warm"])
        atlas.star([c])
        assert atlas.labels("instrument")[a] == "bass"  # the user's value wins
        assert atlas.labels("tag") == {a: "warm", b: "warm", c: "warm"}  # the most carried
        assert atlas.labels("starred") == {c: "yes"}
        assert atlas.sample_labels(a)["tag"] == "dark, warm"
        assert atlas.labels_of([a, c])[c] == {**atlas.labels_of([c])[c], "starred": "yes"}
        assert {"tag", "starred", "instrument"} <= set(atlas.label_keys())
        ids_col, values = atlas.label_column("instrument")
        assert dict(zip(ids_col.tolist(), values)) == atlas.labels("instrument")
        summary = atlas.label_summary()
        assert summary["tag"] == {"dark": 1, "warm": 3} and summary["instrument"]["bass"] == 1
        assert summary["instrument"]["low"] == 5  # a is bass now
        assert "tag" not in atlas.label_summary(user=False)
        assert atlas.find_samples(labels=[("tag", "dark")]).tolist() == [a]
        assert atlas.find_samples(labels=[("tag", "warm")]).tolist() == sorted([a, b, c])
        assert atlas.find_samples(labels=[("instrument", "low")]).tolist() == sorted(
            i for p, i in ids.items() if p.startswith("low/") and i != a)
        assert atlas.find_samples(labels=[("instrument", "bass")]).tolist() == [a]
        # the values of one key are alternatives (a sample has one); each plain tag must hold
        either = atlas.find_samples(labels=[("instrument", "bass"), ("instrument", "low"),
                                            ("instrument", "bass")]).tolist()
        assert either == sorted(i for p, i in ids.items() if p.startswith("low/"))
        assert atlas.find_samples(labels=[("tag", "dark"), ("tag", "warm")]).tolist() == [a]
        assert atlas.find_samples(labels=[("instrument", "bass"), ("instrument", "low"),
                                          ("tag", "warm")]).tolist() == sorted([a, b])


def test_labels_without_suggestions_read_the_users_own_alone(indexed):
    """Without the suggestions (what an evaluation scores against), a sample reads the user's
    own tags alone, and the one it reads is the most carried among the user's own: here
    'mine' (two samples) over 'zed' (one), though suggestions put 'zed' on three more; a key
    only suggested is absent."""
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        ids = sorted(_ids(atlas).values())
        atlas.tag(ids[:1], add=["mine", "zed"])
        atlas.tag(ids[1:2], add=["mine"])
        atlas.tag(ids[1:4], add=["zed", "mood:dark"], suggested=True, confidence=0.8)
        assert atlas.labels("tag")[ids[0]] == "zed"  # the page: the most carried, suggested too
        assert atlas.labels("tag", suggested=False) == {ids[0]: "mine", ids[1]: "mine"}
        assert atlas.labels("mood")[ids[2]] == "dark"
        assert ids[2] not in atlas.labels("mood", suggested=False)


def test_training_reads_no_label_the_map_suggested_and_says_so(indexed, capsys):
    """A model taught its map's guesses learns their mistakes as truth: training reads the
    index's labels and the user's own; a suggestion the user accepts is the user's."""
    from soundatlas.sampling import TrainingData

    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        ids = sorted(_ids(atlas).values())
        atlas.tag(ids[:9], add=["mood:dark"], suggested=True, confidence=0.8)
        atlas.tag(ids[9:], add=["mood:bright"], suggested=True, confidence=0.8)
        atlas.tag(ids[:2], add=["mood:dark"])  # accepted: the user's own now
        data = TrainingData.from_atlas(atlas, ids, label_keys=["mood"])
        assert [v for v in data.labels["mood"] if v] == ["dark", "dark"]
        assert data.suggested_only == {"mood": len(ids) - 2}
        guessed = TrainingData.from_atlas(atlas, ids, label_keys=["mood"], suggested=True)
        assert all(guessed.labels["mood"]) and guessed.suggested_only == {}
    rc, _, err = _cli(capsys, "train", "--atlas", indexed / ".soundatlas", "-n", "label:mood",
                      "--iterations", "5", "-q")
    assert rc == 1 and "does not read labels suggested from the map that nobody accepted" in err
    assert "samples of 'mood'" in err and "soundatlas tag --add KEY:VALUE" in err


def test_what_the_user_made_follows_moved_files_and_survives_reindexing(indexed):
    atlas_dir = indexed / ".soundatlas"
    with Atlas.open(atlas_dir, write=True) as atlas:
        ids = _ids(atlas)
        moved, gone = ids["low/low_036.wav"], ids["mid/mid_060.wav"]
        atlas.tag([moved, gone], add=["keep"])
        atlas.star([moved])
        atlas.add_to_collection("set", [gone, moved], create=True)
    (indexed / "renamed").mkdir()
    shutil.move(indexed / "low/low_036.wav", indexed / "renamed/kick.wav")
    (indexed / "mid/mid_060.wav").unlink()
    index_library(indexed, n_jobs=1)  # the move is found, the deleted file removed
    with Atlas.open(atlas_dir) as atlas:
        now = _ids(atlas)
        assert "mid/mid_060.wav" not in now
        kick = now["renamed/kick.wav"]
        assert atlas.curation_of([kick])[kick]["tags"] == ["keep"]
        assert atlas.curation_of([kick])[kick]["starred"]
        assert atlas.collection_members("set") == [(None, "mid/mid_060.wav"),
                                                   (kick, "renamed/kick.wav")]
        assert atlas.collections()[0]["n_missing"] == 1
        missing = atlas.missing_items()
        assert [(m["path"], m["tags"], m["collections"]) for m in missing] == [
            ("mid/mid_060.wav", ["keep"], ["set"])]
    write_tone(indexed / "mid/mid_060.wav", 440.0 * 2 ** ((60 - 69) / 12), seconds=0.6,
               seed=60, noise=0.01)  # the same bytes come back: the items are present again
    index_library(indexed, n_jobs=1)
    with Atlas.open(atlas_dir, write=True) as atlas:
        back = _ids(atlas)["mid/mid_060.wav"]
        assert atlas.curation_of([back])[back]["tags"] == ["keep"]
        assert atlas.missing_items() == []
        (indexed / "mid/mid_060.wav").unlink()
    index_library(indexed, n_jobs=1)
    with Atlas.open(atlas_dir, write=True) as atlas:
        assert atlas.forget_missing() == 1
        assert atlas.missing_items() == [] and atlas.collections()[0]["n"] == 1


def test_tag_rows_round_trip_through_another_atlas_of_the_library(indexed, tmp_path):
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        ids = _ids(atlas)
        atlas.tag(list(ids.values())[:5], add=["warm", "mood:dark"])
        atlas.tag([ids["high/high_084.wav"]], add=["bright"], suggested=True, confidence=0.8)
        atlas.star([ids["high/high_085.wav"]])
        rows = atlas.tag_rows()
    assert len(rows) == 12 and {"path", "hash", "tag", "suggested", "confidence"} == set(rows[0])
    other = tmp_path / "other"
    index_library(indexed, atlas_dir=other, n_jobs=1)
    with Atlas.open(other, write=True) as atlas:
        assert atlas.import_tag_rows(rows) == {"changed": 12, "unchanged": 0, "missing": 0}
        assert atlas.tag_rows() == rows
        assert atlas.import_tag_rows(rows)["unchanged"] == 12
        # by path alone, as a hand-written CSV names them
        by_path = [{"path": "low/low_040.wav", "tag": "hand"}]
        assert atlas.import_tag_rows(by_path)["changed"] == 1
        with pytest.raises(ParameterError, match=r"line 2: no sample at 'nope.wav'.*line 3: tag"):
            atlas.import_tag_rows([{"path": "nope.wav", "tag": "x"},
                                   {"path": "low/low_040.wav", "tag": "a,b"}])
        assert len(atlas.tag_rows()) == 13  # nothing written by the refused import


@pytest.mark.parametrize("tag, error", [
    ("", "empty"), (" x", "space"), ("a,b", "comma"), ("x\n", "space"), ("a\x00b", "control"),
    ("k:", "both"), (":v", "both"), ("k :v", "both"), ("starred:yes", "star"),
    ("x" * 101, "longer"),
])
def test_bad_tags_are_refused_by_name(tag, error):
    with pytest.raises(ParameterError, match=error):
        parse_tag(tag)


def test_bad_requests_write_nothing(indexed):
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        a = int(atlas.sample_ids()[0])
        with pytest.raises(ParameterError, match="no samples with ids 999999"):
            atlas.tag([a, 999999], add=["x"])
        with pytest.raises(ParameterError, match="comma"):
            atlas.tag([a], add=["fine", "not,fine"])
        assert atlas.curation_of([a]) == {} and atlas.tag_rows() == []
        with pytest.raises(ParameterError, match="no collection named 'none'"):
            atlas.add_to_collection("none", [a])
        atlas.create_collection("one")
        with pytest.raises(ParameterError, match="exists already"):
            atlas.create_collection("one")
        with pytest.raises(ParameterError, match="collection name"):
            atlas.create_collection(" padded")
        with pytest.raises(ParameterError, match="at most"):
            atlas.set_note(a, "x" * 10_001)


def test_an_atlas_from_before_curation_reads_empty_and_migrates(indexed):
    atlas_dir = indexed / ".soundatlas"
    downgrade_schema(atlas_dir, 5)
    with Atlas.open(atlas_dir) as atlas:  # read-only: the tables are not there
        a = int(atlas.sample_ids()[0])
        assert atlas.curation_of([a]) == {} and atlas.collections() == []
        assert "tag" not in atlas.label_keys() and atlas.missing_items() == []
        assert atlas.find_samples(labels=[("instrument", "low")]).size == 6
    with Atlas.open(atlas_dir, write=True) as atlas:
        assert atlas.schema_version == SCHEMA_VERSION
        atlas.tag([a], add=["now"])
        assert atlas.labels("tag") == {a: "now"}
        assert np.array_equal(atlas.find_samples(labels=[("tag", "now")]), [a])


# -- the command line ------------------------------------------------------------------------------


def _cli(capsys, *args) -> tuple[int, str, str]:
    proc = run_in_process(capsys, *args)  # argparse's usage errors too (exit 2)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_commands_tag_star_note_and_collect_by_id_path_and_folder(indexed, capsys,
                                                                         tmp_path):
    import csv
    import json
    import zipfile

    A = ("--atlas", indexed / ".soundatlas")
    rc, out, _ = _cli(capsys, "tag", *A, "low", "mid/mid_060.wav", "--add", "warm",
                      "--add", "mood:dark", "--json")
    assert rc == 0 and json.loads(out) == {"samples": 7, "changed": 14}
    absolute = indexed / "high/high_084.wav"
    assert _cli(capsys, "star", *A, absolute)[0] == 0
    with Atlas.open(indexed / ".soundatlas") as atlas:
        ids = _ids(atlas)
        assert atlas.ids_with(tag="warm") == {i for p, i in ids.items()
                                              if p.startswith("low/") or p == "mid/mid_060.wav"}
        assert atlas.ids_with(starred=True) == {ids["high/high_084.wav"]}
    kick = ids["low/low_036.wav"]
    rc, out, err = _cli(capsys, "collections", *A)  # none yet: said, on stderr alone
    assert rc == 0 and out == "" and "no collections yet" in err
    assert _cli(capsys, "note", *A, kick)[1:] == ("", f"sample {kick} has no note\n")
    assert _cli(capsys, "note", *A, kick, "deep one")[:2] == (0, f"note of sample {kick} "
                                                              "written\n")
    assert _cli(capsys, "note", *A, "low/low_036.wav")[1] == "deep one\n"
    rc, _, err = _cli(capsys, "tag", *A, "nope.wav", "999999", "low", "--add", "x")
    assert rc == 2 and "nope.wav" in err and "999999" in err
    rc, _, err = _cli(capsys, "tag", *A, "low", "--add", "a,b")
    assert rc != 0 and "comma" in err
    rc, _, err = _cli(capsys, "tag", *A, "/elsewhere/x.wav", "--add", "x")
    assert rc == 2 and "outside the library" in err

    assert _cli(capsys, "collections", "add", *A, "kit", "high/high_084.wav", kick)[0] == 0
    rc, out, _ = _cli(capsys, "collections", "list", *A, "--json")
    assert json.loads(out)[0] | {"created": 0} == {"name": "kit", "n": 2, "n_missing": 0,
                                                   "created": 0}
    rc, out, _ = _cli(capsys, "collections", "show", *A, "kit", "--json")
    assert [m["path"] for m in json.loads(out)] == ["high/high_084.wav", "low/low_036.wav"]
    for ext in ("m3u", "csv", "zip"):
        target = tmp_path / f"kit.{ext}"
        assert _cli(capsys, "collections", "export", *A, "kit", "-o", target)[0] == 0
    assert (tmp_path / "kit.m3u").read_text().splitlines()[2] == str(indexed / "high/high_084.wav")
    rows = list(csv.DictReader((tmp_path / "kit.csv").open()))
    assert rows[1]["path"] == "low/low_036.wav" and rows[1]["tag"] == "warm"
    assert rows[1]["mood"] == "dark" and rows[0]["starred"] == "yes"
    with zipfile.ZipFile(tmp_path / "kit.zip") as z:
        assert z.namelist() == ["high/high_084.wav", "low/low_036.wav"]
        assert z.read("low/low_036.wav") == (indexed / "low/low_036.wav").read_bytes()
    rc, _, err = _cli(capsys, "collections", "export", *A, "kit", "-o", tmp_path / "kit.txt")
    assert rc == 2 and ".m3u" in err
    assert _cli(capsys, "collections", "rename", *A, "kit", "drums")[0] == 0
    rc, _, err = _cli(capsys, "collections", "show", *A, "kit")
    assert rc == 1 and "no collection named 'kit'" in err
    assert _cli(capsys, "collections", "delete", *A, "drums")[0] == 0


def _m3u_entries(text: str) -> list[Path]:
    """The files an M3U lists, read the way players do: one entry a line, a ``file://`` URI
    percent-decoded."""
    from urllib.parse import unquote, urlparse

    lines = text.split("\n")
    assert lines[0] == "#EXTM3U" and lines[-1] == ""
    out = []
    for info, entry in zip(lines[1:-1:2], lines[2:-1:2]):
        assert info.startswith("#EXTINF:") and not entry.startswith("#")
        assert "\r" not in info + entry
        out.append(Path(unquote(urlparse(entry).path) if entry.startswith("file://") else entry))
    assert len(lines) == 2 + 2 * len(out)  # nothing else: each entry is one line
    return out


def test_a_file_name_with_a_line_break_is_one_m3u_entry(tone_library, capsys, tmp_path):
    """A newline (or CR) in a file name would split its M3U entry in two: such a path is written
    as a ``file://`` URI and the title on one line, from the command and from the page."""
    odd = [write_tone(tone_library / "odd" / "two\nlines.wav", 330.0),
           write_tone(tone_library / "odd" / "cr\r\nhere é.wav", 350.0)]
    index_library(tone_library, n_jobs=1)
    with Atlas.open(tone_library / ".soundatlas") as atlas:
        ids = _ids(atlas)
    picked = ["odd/two\nlines.wav", "low/low_036.wav", "odd/cr\r\nhere é.wav"]
    want = [tone_library / p for p in picked]
    assert want[0] == odd[0] and want[2] == odd[1]
    A = ("--atlas", tone_library / ".soundatlas")
    assert _cli(capsys, "collections", "add", *A, "odd", *(ids[p] for p in picked))[0] == 0
    target = tmp_path / "odd.m3u"
    assert _cli(capsys, "collections", "export", *A, "odd", "-o", target)[0] == 0
    text = target.read_text(encoding="utf-8")
    assert _m3u_entries(text) == want
    assert text.split("\n")[4] == str(want[1])  # an ordinary path stays a plain path
    assert "#EXTINF:1.000,odd/two lines\n" in text
    r = _client(tone_library / ".soundatlas").post(
        "/api/export", json={"ids": [ids[p] for p in picked], "format": "m3u"})
    assert r.status_code == 200 and _m3u_entries(r.text) == want


def test_tags_export_and_import_round_trip_exactly(indexed, capsys, tmp_path):
    A = ("--atlas", indexed / ".soundatlas")
    _cli(capsys, "tag", *A, "low", "--add", "warm", "--add", "mood:dark")
    _cli(capsys, "star", *A, "mid")
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        atlas.tag([_ids(atlas)["high/high_084.wav"]], add=["bright"], suggested=True,
                  confidence=0.8125)
    first = tmp_path / "tags.csv"
    assert _cli(capsys, "tags", "export", *A, first)[0] == 0
    other = tmp_path / "other"
    index_library(indexed, atlas_dir=other, n_jobs=1)
    assert _cli(capsys, "tags", "import", "--atlas", other, first)[0] == 0
    again = tmp_path / "again.csv"
    assert _cli(capsys, "tags", "export", "--atlas", other, again)[0] == 0
    assert again.read_bytes() == first.read_bytes()
    rc, out, _ = _cli(capsys, "tags", "list", "--atlas", other, "--json")
    import json

    assert json.loads(out) == {"tags": {"bright": 1, "mood:dark": 6, "warm": 6}, "starred": 6}
    # a hand-written CSV: a BOM, paths only; and refusals that name the line and write nothing
    hand = tmp_path / "hand.csv"
    hand.write_text("\ufeffpath,tag\nlow/low_040.wav,by-hand\n", encoding="utf-8")
    assert _cli(capsys, "tags", "import", "--atlas", other, hand)[0] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("path,tag\nlow/low_040.wav,fine\nmissing.wav,x\n", encoding="utf-8")
    rc, _, err = _cli(capsys, "tags", "import", "--atlas", other, bad)
    assert rc == 1 and "line 3: no sample at 'missing.wav'" in err
    for text, message in (("path,label\nx,y\n", "needs a 'tag' column"),
                          ("path,tag,tag\nx,y,z\n", "appears twice")):
        bad.write_text(text, encoding="utf-8")
        rc, _, err = _cli(capsys, "tags", "import", "--atlas", other, bad)
        assert rc == 2 and message in err
    bad.write_bytes(b"path,tag\n\xff\xfe,x\n")
    rc, _, err = _cli(capsys, "tags", "import", "--atlas", other, bad)
    assert rc == 2 and "not UTF-8" in err
    with Atlas.open(other) as atlas:
        assert "fine" not in atlas.label_summary()["tag"]


def _library_of(tmp_path, names: list[str]):
    """A library of one tone per name (each its own bytes: curation is by content), indexed:
    (its folder, the --atlas option, path -> sample id)."""
    lib = tmp_path / "lib"
    for i, name in enumerate(names):
        write_tone(lib / name, 200.0 + 50 * i, seconds=0.3)
    index_library(lib, n_jobs=1)
    with Atlas.open(lib / ".soundatlas") as atlas:
        ids = _ids(atlas)
    assert set(ids) == set(names)
    return lib, ("--atlas", lib / ".soundatlas"), ids


def test_names_with_line_breaks_survive_the_tag_and_collection_csvs(tmp_path, capsys):
    """A file name may hold a CR or an LF: the CSVs quote such a cell, and reading one back
    keeps a quoted line break inside its cell."""
    import csv

    odd = ["cr/carriage\rreturn.wav", "nl/line\nbreak.wav", "plain.wav"]
    lib, A, ids = _library_of(tmp_path, odd)
    assert _cli(capsys, "tag", *A, *(ids[n] for n in odd), "--add", "odd")[0] == 0
    exported = tmp_path / "tags.csv"
    assert _cli(capsys, "tags", "export", *A, exported)[0] == 0
    other = tmp_path / "other"
    index_library(lib, atlas_dir=other, n_jobs=1)
    rc, _, err = _cli(capsys, "tags", "import", "--atlas", other, exported)
    assert rc == 0, err
    with Atlas.open(other) as atlas:
        assert atlas.ids_with(tag="odd") == set(_ids(atlas).values())
    # a hand-written CSV whose quoted cell holds the line break
    hand = tmp_path / "hand.csv"
    hand.write_text('path,tag\n"nl/line\nbreak.wav",by-hand\n', encoding="utf-8")
    assert _cli(capsys, "tags", "import", "--atlas", other, hand)[0] == 0
    with Atlas.open(other) as atlas:
        assert atlas.ids_with(tag="by-hand") == {_ids(atlas)["nl/line\nbreak.wav"]}
    hand.write_text('path,tag\n"nl/line\nbreak.wav",ok\nnowhere.wav,x\n', encoding="utf-8")
    rc, _, err = _cli(capsys, "tags", "import", "--atlas", other, hand)
    assert rc == 1 and "line 4: no sample at 'nowhere.wav'" in err, err  # the file's own line
    hand.write_bytes(b'path,tag\r\n"cr/carriage\rreturn.wav",cr-by-hand\r\n')  # a CR kept
    rc, _, err = _cli(capsys, "tags", "import", "--atlas", other, hand)
    assert rc == 0, err
    with Atlas.open(other) as atlas:
        assert atlas.ids_with(tag="cr-by-hand") == {_ids(atlas)["cr/carriage\rreturn.wav"]}
    # a collection's CSV reads back as one row per sample, with its path whole
    assert _cli(capsys, "collections", "add", *A, "odd", *(ids[n] for n in odd))[0] == 0
    out = tmp_path / "odd.csv"
    assert _cli(capsys, "collections", "export", *A, "odd", "-o", out)[0] == 0
    with open(out, newline="", encoding="utf-8") as f:
        assert sorted(row["path"] for row in csv.DictReader(f)) == sorted(odd)


def test_items_are_found_as_written_through_links_and_in_either_unicode_form(tmp_path, capsys,
                                                                              monkeypatch):
    import io
    import os
    import unicodedata

    lib = tmp_path / "lib"
    outside = tmp_path / "outside"
    nfd = unicodedata.normalize("NFD", "Piano/Clé.wav")
    for i, name in enumerate((nfd, "plain/kick.wav", " lead.wav")):
        write_tone(lib / name, 300.0 + 50 * i, seconds=0.3)  # other bytes: curation is by hash
    write_tone(outside / "far.wav", 550.0, seconds=0.3)
    os.symlink(outside, lib / "linked")  # a folder of samples kept elsewhere
    index_library(lib, n_jobs=1)
    A = ("--atlas", lib / ".soundatlas")
    with Atlas.open(lib / ".soundatlas") as atlas:
        ids = _ids(atlas)
    assert set(ids) == {nfd, "plain/kick.wav", " lead.wav", "linked/far.wav"}
    for item, path in ((str(lib / "linked/far.wav"), "linked/far.wav"),  # through the link
                       (unicodedata.normalize("NFC", nfd), nfd),  # typed composed
                       ("./plain//kick.wav", "plain/kick.wav")):
        rc, out, err = _cli(capsys, "star", *A, item, "--json")
        assert rc == 0, (item, err)
        with Atlas.open(lib / ".soundatlas") as atlas:
            assert ids[path] in atlas.ids_with(starred=True), item
    hand = tmp_path / "hand.csv"  # a tags CSV typed elsewhere: the name composed
    hand.write_text(f"path,tag\n{unicodedata.normalize('NFC', nfd)},keys\n", encoding="utf-8")
    rc, _, err = _cli(capsys, "tags", "import", *A, hand)
    assert rc == 0, err
    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.ids_with(tag="keys") == {ids[nfd]}
    monkeypatch.setattr("sys.stdin", io.StringIO(" lead.wav\n"))  # a name's leading space kept
    assert _cli(capsys, "tag", *A, "-", "--add", "lead")[0] == 0
    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.ids_with(tag="lead") == {ids[" lead.wav"]}
    # padded lines (a right-aligned id column, a trailing blank) still name their samples
    monkeypatch.setattr("sys.stdin", io.StringIO(f"  {ids['plain/kick.wav']}\nplain/kick.wav \n"))
    assert _cli(capsys, "tag", *A, "-", "--add", "padded")[0] == 0
    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.ids_with(tag="padded") == {ids["plain/kick.wav"]}
    rc, _, err = _cli(capsys, "star", *A, str(outside / "far.wav"))  # not through the library
    assert rc == 2 and "outside the library" in err


def test_a_zip_export_extracts_as_as_many_files_on_any_system(tmp_path, capsys):
    import unicodedata
    import zipfile

    from soundatlas.exports import portable_names

    names = ["case/Kick.wav", "case/kick.wav", "odd/what?.wav", "odd/back\\slash.wav",
             "odd/con.wav", unicodedata.normalize("NFD", "odd/Café.wav"), "odd/café.wav"]
    lib, A, ids = _library_of(tmp_path, names)
    assert _cli(capsys, "collections", "add", *A, "all", *(ids[n] for n in names))[0] == 0
    out = tmp_path / "all.zip"
    assert _cli(capsys, "collections", "export", *A, "all", "-o", out)[0] == 0
    with zipfile.ZipFile(out) as z:
        members = z.namelist()
        assert len({unicodedata.normalize("NFC", m).casefold() for m in members}) == len(names)
        assert not any(c in m for m in members for c in '<>:"\\|?*')
        assert sorted(z.read(m) for m in members) == sorted(
            (lib / n).read_bytes() for n in names)  # every file, whole
    assert portable_names(["a/Kick.wav", "a/kick.wav", "a/x?.wav", "NUL.txt", "ok/fine.wav"]) == [
        "a/Kick.wav", "a/kick (2).wav", "a/x_.wav", "_NUL.txt", "ok/fine.wav"]


# -- the server ------------------------------------------------------------------------------------


def _client(atlas_dir, **kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from soundatlas.web import create_app

    return TestClient(create_app(atlas_dir, **kw))


def test_the_api_writes_tags_stars_notes_and_collections_and_reads_them_as_labels(indexed):
    client = _client(indexed / ".soundatlas")
    with Atlas.open(indexed / ".soundatlas") as atlas:
        ids = _ids(atlas)
    a, b = ids["low/low_036.wav"], ids["mid/mid_060.wav"]
    assert client.get("/api/curation").json()["writable"] is True
    r = client.post("/api/curation/tags", json={"ids": [a, b], "add": ["punchy", "mood:dark"]})
    assert r.status_code == 200 and r.json()["changed"] == 4
    assert r.json()["items"][0]["tags"] == ["mood:dark", "punchy"]
    assert client.post("/api/curation/star", json={"ids": [a]}).json()["changed"] == 1
    assert client.put(f"/api/curation/notes/{b}", json={"note": "from the session"}
                      ).json()["note"] == "from the session"
    assert client.post("/api/collections", json={"name": "kit"}).status_code == 201
    assert client.post("/api/collections/kit/add", json={"ids": [b, a]}).json()["added"] == 2
    assert [i["id"] for i in client.get("/api/collections/kit").json()["items"]] == [b, a]
    # tags are labels: the sample, the label codes, the search
    assert client.get(f"/api/samples/{a}").json()["labels"]["tag"] == "punchy"
    assert client.get(f"/api/samples/{a}").json()["labels"]["starred"] == "yes"
    label = client.get("/api/labels/mood").json()
    assert label["values"] == ["dark"]
    found = client.get("/api/samples", params={"label": "tag:punchy"}).json()
    assert found["ids"] == sorted([a, b])
    assert client.get("/api/samples", params={"label": "starred:yes"}).json()["ids"] == [a]
    assert client.get("/api/samples", params={"collection": "kit", "q": "mid"}).json()["ids"] \
        == [b]
    summary = client.get("/api/curation").json()
    assert summary["tags"] == {"mood:dark": 2, "punchy": 2} and summary["starred"] == 1
    assert summary["collections"][0]["n"] == 2
    items = client.get("/api/curation/items", params={"ids": f"{b},{a}"}).json()["items"]
    assert [i["id"] for i in items] == [b, a] and items[0]["note"] == "from the session"
    assert client.patch("/api/collections/kit", json={"name": "drums"}).status_code == 200
    assert client.post("/api/collections/drums/remove", json={"ids": [a]}).json()["removed"] == 1
    assert client.delete("/api/collections/drums").status_code == 200
    assert client.get("/api/collections").json() == {"collections": []}
    # a name with '/' is reached as the page asks for it (encodeURIComponent); '.' and '..' are
    # refused: a browser drops them from the URL
    slash = "/api/collections/" + quote("drums/kicks", safe="")
    assert client.post("/api/collections", json={"name": "drums/kicks"}).status_code == 201
    assert client.post(f"{slash}/add", json={"ids": [a, b]}).json()["added"] == 2
    assert [i["id"] for i in client.get(slash).json()["items"]] == [a, b]
    assert client.post(f"{slash}/remove", json={"ids": [a]}).json()["removed"] == 1
    r = client.patch(slash, json={"name": "kits/add"})  # a name ending like a route
    assert r.json() == {"name": "kits/add", "was": "drums/kicks"}
    assert client.post("/api/collections/kits%2Fadd/add", json={"ids": [a]}).json()["added"] == 1
    assert [i["id"] for i in client.get("/api/collections/kits%2Fadd").json()["items"]] == [b, a]
    assert client.delete("/api/collections/kits%2Fadd").json() == {"deleted": "kits/add"}
    # a filter on the user's stars or tags answers nothing, not 400, once the last one is gone
    assert client.post("/api/curation/star", json={"ids": [a], "starred": False}).status_code == 200
    client.post("/api/curation/tags", json={"ids": [a, b], "remove": ["punchy", "mood:dark"]})
    for label in ("starred:yes", "tag:punchy"):
        r = client.get("/api/samples", params={"label": label})
        assert r.status_code == 200 and r.json()["total"] == 0, r.text
    assert client.get("/api/samples", params={"label": "mood:dark"}).status_code == 400
    for dots in (".", ".."):
        r = client.post("/api/collections", json={"name": dots})
        assert r.status_code == 400 and "not '.' or '..'" in r.json()["error"]
    assert client.get("/api/collections").json() == {"collections": []}


@pytest.mark.parametrize("method, path, body, status, message", [
    ("post", "/api/curation/tags", {"ids": [], "add": ["x"]}, 422, "ids"),
    ("post", "/api/curation/tags", {"ids": "1", "add": ["x"]}, 422, "ids"),
    ("post", "/api/curation/tags", {"ids": [True], "add": ["x"]}, 422, "ids"),  # not sample 1
    ("post", "/api/curation/star", {"ids": ["2"]}, 422, "ids"),
    ("post", "/api/curation/star", {"ids": [2.0]}, 422, "ids"),
    ("post", "/api/curation/tags", {"ids": [1], "add": ["a,b"]}, 400, "comma"),
    ("post", "/api/curation/tags", {"ids": [1, 999999], "add": ["x"]}, 404, "999999"),
    ("post", "/api/curation/star", {"ids": [1], "starred": "maybe"}, 422, "starred"),
    ("put", "/api/curation/notes/999999", {"note": "x"}, 404, "999999"),
    ("put", "/api/curation/notes/1", {"note": "x" * 10_001}, 422, "note"),
    ("post", "/api/collections", {"name": ""}, 422, "name"),
    ("post", "/api/collections", {"name": " padded"}, 400, "collection name"),
    ("post", "/api/collections/none/add", {"ids": [1]}, 404, "no collection named 'none'"),
    ("get", "/api/collections/none", None, 404, "no collection named 'none'"),
    ("get", "/api/curation/items?ids=1,x", None, 400, "'x'"),
])
def test_bad_writes_get_a_clear_error_and_write_nothing(indexed, method, path, body, status,
                                                        message):
    client = _client(indexed / ".soundatlas")
    r = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    with Atlas.open(indexed / ".soundatlas") as atlas:
        assert atlas.tag_rows() == [] and atlas.collections() == []


def test_a_read_only_server_refuses_every_write(indexed, tmp_path):
    client = _client(indexed / ".soundatlas", read_only=True)
    summary = client.get("/api/curation").json()
    assert summary["writable"] is False and "--read-only" in summary["read_only"]
    for method, path, body in (("post", "/api/curation/tags", {"ids": [1], "add": ["x"]}),
                               ("post", "/api/curation/star", {"ids": [1]}),
                               ("post", "/api/collections", {"name": "k"})):
        r = getattr(client, method)(path, json=body)
        assert r.status_code == 403 and "does not write" in r.json()["error"]
    with Atlas.open(indexed / ".soundatlas") as atlas:
        assert atlas.tag_rows() == [] and atlas.collections() == []
    # another site may not write either (the server's refusal of cross-site work)
    r = _client(indexed / ".soundatlas").post(
        "/api/curation/star", json={"ids": [1]}, headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and "another site" in r.json()["error"]


def test_writes_of_20_clients_while_index_runs_are_all_kept(tone_library, tmp_path):
    """A real ``soundatlas serve`` and a real ``soundatlas index`` adding files to the same
    atlas: every tag written by 20 concurrent clients is there afterwards, and the index is
    complete."""
    import os
    import re
    import subprocess
    import sys
    import threading
    import time

    import httpx

    index_library(tone_library, n_jobs=1)
    with Atlas.open(tone_library / ".soundatlas") as atlas:
        ids = atlas.sample_ids().tolist()
    for i in range(120):  # new files for the second index to analyse while the clients write
        write_tone(tone_library / "more" / f"m{i:03d}.wav", 200 + 7 * i, seconds=1.5, seed=i)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "CI": "1"}
    server = subprocess.Popen([str(bin_dir / "soundatlas"), "serve", "--atlas",
                               str(tone_library / ".soundatlas"), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)
        started = time.time()
        index = subprocess.Popen([str(bin_dir / "soundatlas"), "index", str(tone_library),
                                  "--jobs", "1", "-q"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = None
        while first is None or first["status"] != "running":  # the clients start mid-index
            assert index.poll() is None, index.communicate()
            with Atlas.open(tone_library / ".soundatlas") as atlas:
                first = atlas.last_run("index")
                first = first if first and first["started"] > started else None
        errors: list[str] = []

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=120) as c:
                for j in range(10):
                    r = c.post("/api/curation/tags",
                               json={"ids": [ids[(k + j) % len(ids)]], "add": [f"c{k}-{j}"]})
                    if r.status_code != 200:
                        errors.append(r.text)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out, err = index.communicate(timeout=600)
        assert index.returncode == 0, err
        assert errors == []
    finally:
        server.terminate()
        server.communicate(timeout=30)
    with Atlas.open(tone_library / ".soundatlas") as atlas:
        rows = atlas.tag_rows()
        assert {r["tag"] for r in rows} == {f"c{k}-{j}" for k in range(20) for j in range(10)}
        assert atlas.n_samples() == len(ids) + 120
        assert atlas.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reads_while_map_adds_and_removes_files_are_consistent_and_then_show_the_change(
        tone_library):
    """A real ``soundatlas serve`` answers 8 clients reading points, ids, neighbours and samples
    while a real ``soundatlas map`` removes 6 files and adds 60: every answer is whole (counts
    match, ids ascending, neighbours distinct and in order of distance; a sample removed
    meanwhile is a clean 404), and once the map is done the next read shows the new library."""
    import os
    import re
    import subprocess
    import sys
    import threading

    import httpx

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "CI": "1"}

    def sa(*args):
        return [str(bin_dir / "soundatlas"), *map(str, args)]

    assert subprocess.run(sa("map", tone_library, "--jobs", "1", "-q"), env=env).returncode == 0
    removed = sorted((tone_library / "high").glob("*.wav"))
    for path in removed:
        path.unlink()
    for i in range(60):
        write_tone(tone_library / "more" / f"m{i:03d}.wav", 150 + 11 * i, seconds=1.5, seed=i)
    server = subprocess.Popen(sa("serve", "--atlas", tone_library / ".soundatlas", "--port", "0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    problems: list[str] = []
    counts = {"points": 0, "neighbours": 0, "gone": 0, "during": 0}
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)
        mapping = subprocess.Popen(sa("map", tone_library, "--jobs", "1", "-q"), env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def client(k: int) -> None:
            rng = np.random.default_rng(k)
            rounds = 0
            with httpx.Client(base_url=url, timeout=120) as c:
                while mapping.poll() is None or rounds < 3:
                    rounds += 1
                    r = c.get("/api/models/default/points")
                    if r.status_code != 200:
                        problems.append(f"points {r.status_code} {r.text[:200]}")
                        continue
                    n, dims = int(r.headers["x-count"]), int(r.headers["x-dims"])
                    if len(r.content) != 4 * n * (1 + dims):
                        problems.append(f"points: {len(r.content)} bytes for {n} x {dims}")
                        continue
                    ids = np.frombuffer(r.content[: 4 * n], dtype="<i4")
                    points = np.frombuffer(r.content[4 * n:], dtype="<f4")
                    if np.any(np.diff(ids) <= 0) or not np.all(np.isfinite(points)):
                        problems.append("points: ids not ascending or a point not finite")
                    counts["points"] += 1
                    counts["during"] += mapping.poll() is None  # answered while map ran
                    sid = int(rng.choice(ids))
                    r = c.get(f"/api/models/default/neighbours/{sid}", params={"k": 5})
                    if r.status_code == 404:  # removed since the points were read
                        counts["gone"] += 1
                        continue
                    if r.status_code != 200:
                        problems.append(f"neighbours {r.status_code} {r.text[:200]}")
                        continue
                    near = r.json()["neighbours"]
                    got = [x["id"] for x in near]
                    dist = [x["distance"] for x in near]
                    if sid in got or len(set(got)) != len(got) or dist != sorted(dist):
                        problems.append(f"neighbours of {sid}: {near}")
                    counts["neighbours"] += 1
                    r = c.get(f"/api/samples/{got[0]}") if got else None
                    if r is not None and r.status_code not in (200, 404):
                        problems.append(f"sample {r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _, err = mapping.communicate(timeout=600)
        assert mapping.returncode == 0, err
        assert problems == [], problems[:5]
        assert counts["points"] >= 24 and counts["neighbours"] > 0
        assert counts["during"] > 0, counts  # the reads did overlap the writes
        with httpx.Client(base_url=url, timeout=60) as c:  # the page reloaded: the new library
            n_now = 18 - len(removed) + 60
            assert c.get("/api/atlas").json()["n_samples"] == n_now
            r = c.get("/api/models/default/points")
            ids = np.frombuffer(r.content[: 4 * n_now], dtype="<i4")
            assert int(r.headers["x-count"]) == n_now
            found = c.get("/api/samples", params={"q": "more/", "limit": 100}).json()
            assert found["total"] == 60 and set(found["ids"]) <= set(ids.tolist())
            assert c.get("/api/samples", params={"q": "high/"}).json()["total"] == 0
    finally:
        server.terminate()
        server.communicate(timeout=30)


# -- labels suggested from the map -----------------------------------------------------------------


def test_suggest_fills_in_missing_labels_from_the_nearest_labelled_samples(tone_library, capsys):
    import json

    manifest = tone_library / "metadata.csv"
    lines = manifest.read_text().splitlines()
    unlabelled = {}
    for i, line in enumerate(lines[1:], start=1):  # the first tone of each folder: no label
        path, instrument, pitch = line.split(",")
        if path.endswith(("_036.wav", "_060.wav", "_084.wav")):
            lines[i] = f"{path},,{pitch}"
            unlabelled[path] = instrument
    manifest.write_text("\n".join(lines) + "\n")
    index_library(tone_library, n_jobs=1)
    A = ("--atlas", tone_library / ".soundatlas")
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "instrument", "--space", "input", "-k",
                      "3", "--json")
    assert rc == 0
    got = {s["path"]: (s["value"], s["confidence"]) for s in json.loads(out)["suggestions"]}
    assert set(got) == set(unlabelled)  # exactly the samples without the label
    assert {p: v for p, (v, _) in got.items()} == unlabelled  # their folder's instrument
    assert all(0 < c <= 1 for _, c in got.values())
    # each folder's lowest tone lies below its labelled ones: farther out than any of them
    far = {s["path"] for s in json.loads(out)["suggestions"] if s["far"]}
    assert json.loads(out)["n_far"] == len(far)
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "instrument", "--space", "input", "-k",
                      "3", "--apply", "--min-confidence", "0.5", "--json", "--keep-far")
    applied = json.loads(out)
    assert rc == 0 and applied["applied"] == sum(c >= 0.5 for _, c in got.values()) > 0
    with Atlas.open(tone_library / ".soundatlas") as atlas:
        ids = _ids(atlas)
        for path, (value, conf) in got.items():
            cur = atlas.curation_of([ids[path]]).get(ids[path])
            if conf >= 0.5:
                assert cur["tags"] == [f"instrument:{value}"]
                assert cur["suggested"] == {f"instrument:{value}": pytest.approx(conf)}
                assert atlas.labels("instrument")[ids[path]] == value  # a label now
            else:
                assert cur is None
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "instrument", "--space", "input", "--json")
    assert json.loads(out)["n"] == sum(c < 0.5 for _, c in got.values())  # the rest
    for args, status, message in (
            (("--label", "nope", "--space", "input"), 1, "no label 'nope'"),
            (("--label", "instrument", "--space", "input", "-k", "0"), 2,
             "-k: 0 must be at least 1"),
            (("--label", "instrument", "--space", "input", "--min-confidence", "2"), 2,
             "--min-confidence: 2 must lie in 0..1"),
            (("--label", "instrument", "--min-confidence", "nan"), 2, "nan must lie in 0..1"),
            (("--label", "instrument", "--keep-far"), 2, "--keep-far: only with --apply"),
            (("--label", "instrument"), 1, "no model")):  # the atlas, not the line
        rc, _, err = _cli(capsys, "suggest", *A, *args)
        assert rc == status and message in err, err
    # from a map: the samples it has no point for are named, not left out without a word
    assert _cli(capsys, "embed", *A, "-q")[0] == 0
    write_tone(tone_library / "mid/new.wav", 300.0, seconds=0.4)
    index_library(tone_library, n_jobs=1)
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "instrument", "-m", "default", "--json")
    assert rc == 0 and json.loads(out)["n_not_embedded"] == 1
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "instrument")
    assert "1 sample without a point for model default got no suggestion" in out


def test_with_fewer_labelled_samples_than_k_the_confidence_is_still_a_share_of_k(indexed,
                                                                                   capsys):
    """One sample tagged is one vote of the k asked for, not full confidence."""
    import json

    from soundatlas.suggest import vote

    vectors = np.arange(12, dtype=np.float32).reshape(6, 2)
    values, conf = vote(vectors, np.array([0, 1, 2]), ["a", "a", "b"], np.array([3, 4, 5]), 10)
    assert values == ["a"] * 3 and conf.tolist() == [0.2] * 3  # 2 of the 10 asked for
    A = ("--atlas", indexed / ".soundatlas")
    assert _cli(capsys, "tag", *A, "low/low_036.wav", "--add", "mood:deep")[0] == 0
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "mood", "--space", "input", "--json")
    got = json.loads(out)["suggestions"]
    assert rc == 0 and len(got) > 1 and {s["value"] for s in got} == {"deep"}
    assert {s["confidence"] for s in got} == {0.1}  # 1 of k=10
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "mood", "--space", "input",
                      "--min-confidence", "0.9", "--apply", "--json")
    assert rc == 0 and json.loads(out)["applied"] == 0
    with Atlas.open(indexed / ".soundatlas") as atlas:
        assert list(atlas.labels("mood").values()) == ["deep"]  # nothing tagged
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "mood", "--space", "input", "-k", "1",
                      "--json")
    assert {s["confidence"] for s in json.loads(out)["suggestions"]} == {1.0}  # 1 of k=1


def test_hidden_labels_come_back_with_precision_that_rises_with_confidence():
    from soundatlas.suggest import hidden_label_curve

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 16))
    n = 400
    cls = rng.integers(0, 4, n)
    vectors = (centres[cls] + rng.normal(0, 0.9, (n, 16))).astype(np.float32)
    ids = np.arange(n) * 2 + 1
    labels = {int(i): f"c{c}" for i, c in zip(ids, cls)}
    for hide in (0.1, 0.25, 0.5):
        r = hidden_label_curve(ids, vectors, labels, hide=hide, k=10, seed=1)
        assert r["n_hidden"] == round(hide * n) and r["n_known"] == n - r["n_hidden"]
        curve = r["curve"]
        assert curve[0]["coverage"] == 1.0 and curve[0]["precision"] > 0.5  # chance: 0.25
        coverage = [c["coverage"] for c in curve]
        assert coverage == sorted(coverage, reverse=True)
        high = [c["precision"] for c in curve if c["precision"] is not None][-1]
        assert high >= curve[0]["precision"]


def test_adding_a_suggested_tag_accepts_it(indexed):
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        a = int(atlas.sample_ids()[0])
        assert atlas.tag([a], add=["mood:dark"], suggested=True, confidence=0.7) == 1
        assert atlas.curation_of([a])[a]["suggested"] == {"mood:dark": 0.7}
        assert atlas.tag([a], add=["mood:dark"], suggested=True, confidence=0.9) == 0
        assert atlas.tag([a], add=["mood:dark"]) == 1  # accepted: the user's now
        assert atlas.curation_of([a])[a]["suggested"] == {}
        assert atlas.tag([a], add=["mood:dark"], suggested=True) == 0  # stays the user's
        assert atlas.curation_of([a])[a]["suggested"] == {}


def test_a_tag_key_trains_a_neighbourhood_like_any_label(indexed):
    from soundatlas.frames import TrainingData
    from soundatlas.neighbourhoods import parse_neighbourhood

    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        ids = _ids(atlas)
        dark = [i for p, i in ids.items() if p.startswith("low/")]
        bright = [i for p, i in ids.items() if p.startswith("high/")]
        atlas.tag(dark, add=["mood:dark"])
        atlas.tag(bright, add=["mood:bright"])
        data = TrainingData.from_atlas(atlas, label_keys=["mood"])
    n = parse_neighbourhood("label:mood").fit(data)
    assert n.summary()["n_keys"] == 2 and n.summary()["n_samples_used"] == 12
    triples = n.draw(np.random.default_rng(0), 64, data)
    mood = data.label("mood")
    assert all(mood[a] == mood[p] != mood[q]
               for a, p, q in zip(triples.anchor_sample, triples.positive_sample,
                                  triples.negative_sample))


def test_csv_cells_a_spreadsheet_would_run_are_written_as_text_and_read_back(tmp_path, capsys):
    """A file named ``=HYPERLINK(...)`` or a tag ``@home`` would run as a formula in the
    spreadsheet that opens an export (CSV injection): the tags CSV and a collection's CSV write
    such a cell with a ``'`` before it, numbers and ordinary text as they are, and reading
    either back (``tags import``, a manifest) gives every name and tag as it was."""
    import csv

    from soundatlas.labels import read_manifest

    names = ["=HYPERLINK(1).wav", "-3 dB.wav", "'80s/keys.wav", "@home.wav", "plain.wav"]
    lib, A, ids = _library_of(tmp_path, names)
    for tag in ("+boost", "@home", "'80s", "'=x", "-12"):
        assert _cli(capsys, "tag", *A, *ids.values(), "--add", tag)[0] == 0
    exported = tmp_path / "tags.csv"
    assert _cli(capsys, "tags", "export", *A, exported)[0] == 0
    with open(exported, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cells = {c for r in rows for c in (r["path"], r["tag"])}
    assert {"'=HYPERLINK(1).wav", "'-3 dB.wav", "'80s/keys.wav", "'@home.wav", "'+boost",
            "'@home", "'80s", "''=x", "-12"} <= cells
    assert not any(c[:1] in "=+@" or c[:1] == "-" and c != "-12" for c in cells), cells
    other = tmp_path / "other"
    index_library(lib, atlas_dir=other, n_jobs=1)
    rc, _, err = _cli(capsys, "tags", "import", "--atlas", other, exported)
    assert rc == 0, err
    again = tmp_path / "again.csv"
    assert _cli(capsys, "tags", "export", "--atlas", other, again)[0] == 0
    assert again.read_bytes() == exported.read_bytes()
    with Atlas.open(other) as atlas:
        for tag in ("+boost", "@home", "'80s", "'=x", "-12"):
            assert atlas.ids_with(tag=tag) == set(_ids(atlas).values()), tag
    # a collection's CSV (the page's export too), read back as a label manifest
    assert _cli(capsys, "collections", "add", *A, "all", *ids.values())[0] == 0
    listing = lib / "all.csv"
    assert _cli(capsys, "collections", "export", *A, "all", "-o", listing)[0] == 0
    with open(listing, newline="", encoding="utf-8") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    assert sorted(paths) == sorted(["'=HYPERLINK(1).wav", "'-3 dB.wav", "'80s/keys.wav",
                                    "'@home.wav", "plain.wav"])
    assert sorted(read_manifest(listing, lib).labels) == sorted(names)


def test_suggest_apply_stores_what_a_tag_can_hold_in_one_go_and_names_the_rest(tmp_path, capsys):
    """Values a tag cannot hold (a folder named with a comma) are named and left out while the
    others are stored; a label whose name has a ':' (it would be read back as another label)
    or the star's label is refused before any work."""
    import json

    lib = tmp_path / "lib"
    for i, name in enumerate(("kick, hard/a.wav", "kick, hard/b.wav", "kick, hard/c.wav")):
        write_tone(lib / name, 200.0 + 5 * i, seconds=0.3)
    for i, name in enumerate(("snare/a.wav", "snare/b.wav", "snare/c.wav")):
        write_tone(lib / name, 1600.0 + 40 * i, seconds=0.3)
    write_tone(lib / "low.wav", 210.0, seconds=0.3)  # no folder label: the ones to fill in
    write_tone(lib / "high.wav", 1650.0, seconds=0.3)
    (lib / "metadata.csv").write_text("path,src:kit\nsnare/a.wav,acoustic\n")
    index_library(lib, n_jobs=1)
    A = ("--atlas", lib / ".soundatlas")
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "folder", "--space", "input", "-k", "3",
                      "--apply", "--json")
    got = json.loads(out)
    assert rc == 0 and {s["path"]: s["value"] for s in got["suggestions"]} == {
        "low.wav": "kick, hard", "high.wav": "snare"}
    assert got["applied"] == 1 and got["not_stored"] == [
        {"value": "kick, hard", "n": 1, "why": "tag 'folder:kick, hard': a comma or a control "
         "character"}]
    with Atlas.open(lib / ".soundatlas") as atlas:
        ids = _ids(atlas)
        assert atlas.labels("folder")[ids["high.wav"]] == "snare" and ids["low.wav"] not in \
            atlas.labels("folder")
    rc, out, _ = _cli(capsys, "suggest", *A, "--label", "folder", "--space", "input", "-k", "3",
                      "--apply")
    assert rc == 0 and "not stored: 1 suggestion of folder=kick, hard: tag 'folder:kick, hard'" \
        in out, out
    for label, words in (("src:kit", "a ':' in its name"), ("starred", "star the samples")):
        rc, _, err = _cli(capsys, "suggest", *A, "--label", label, "--space", "input", "--apply")
        assert rc == 2 and f"--apply: label {label!r} cannot be stored as a tag" in err \
            and words in err, err
    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.user_label_keys() == ["folder"]  # nothing else written


def test_curation_of_an_id_asked_many_times_lists_each_tag_once(indexed):
    """Ids are read in chunks: one asked for in two chunks was read twice."""
    with Atlas.open(indexed / ".soundatlas", write=True) as atlas:
        sid = next(iter(_ids(atlas).values()))
        atlas.tag([sid], add=["bulk", "mood:dark"])
        atlas.add_to_collection("A", [sid], create=True)
        cur = atlas.curation_of([sid] * 2000)
        assert cur[sid]["tags"] == ["bulk", "mood:dark"] and cur[sid]["collections"] == ["A"]
        assert atlas.user_label_rows(ids=[sid] * 2000) == [(sid, "mood", "dark"),
                                                           (sid, "tag", "bulk")]


def test_curation_input_that_cannot_be_meant_is_refused_and_what_it_shows_is_the_users(
        indexed, capsys, tmp_path):
    """A '*' tag (a removal's "every value": it could never be removed alone), a hash that is
    not one, a confidence outside 0..1 are refused, naming them; `tags list` counts the samples
    the user tagged, not those the index labelled the same; a note's escape sequences do not
    reach the terminal; the API refuses a tag request with nothing to do."""
    import json

    A = ("--atlas", indexed / ".soundatlas")
    for tag in ("*", "mood:*"):
        rc, _, err = _cli(capsys, "tag", *A, "low", "--add", tag)
        assert rc == 2 and "'*' as a value means every value of its key" in err, err
    rc, _, err = _cli(capsys, "tag", *A, "low", "--remove", "starred:*")
    assert rc == 2 and "'starred:*'" in err and "starred:x" not in err, err
    assert _cli(capsys, "tag", *A, "low/low_036.wav", "low/low_037.wav", "--add",
                "instrument:low")[0] == 0
    rc, out, _ = _cli(capsys, "tags", "list", *A, "--json")
    assert json.loads(out) == {"tags": {"instrument:low": 2}, "starred": 0}  # not the index's 6
    with Atlas.open(indexed / ".soundatlas") as atlas:
        ids = _ids(atlas)
        digest = atlas.samples([ids["mid/mid_060.wav"]])[0].hash
    hand = tmp_path / "hand.csv"
    for text, words in (("hash,tag\nnot-a-hash,evil\n", "line 2: hash 'not-a-hash' is not a "
                         "content hash (32 hexadecimal digits"),
                        (f"hash,tag,confidence\n{digest},x,-5\n", "line 2: confidence '-5' is "
                         "not a number from 0 to 1"),
                        (f"hash,tag,confidence\n{digest},x,nan\n", "confidence 'nan'")):
        hand.write_text(text)
        rc, _, err = _cli(capsys, "tags", "import", *A, hand)
        assert rc == 1 and words in err, err
    hand.write_text(f"hash,tag\n{digest.upper()},upper\n")  # a spreadsheet's upper case
    assert _cli(capsys, "tags", "import", *A, hand)[0] == 0
    with Atlas.open(indexed / ".soundatlas") as atlas:
        assert atlas.ids_with(tag="upper") == {ids["mid/mid_060.wav"]}
        assert atlas.missing_items() == []  # no junk kept as missing
    note = "first line\n\tsecond\x1b]0;PWNED\x07\x1b[2J"
    assert _cli(capsys, "note", *A, "high/high_084.wav", note)[0] == 0
    rc, out, _ = _cli(capsys, "note", *A, "high/high_084.wav")
    assert rc == 0 and out == "first line\n\tsecond\\x1b]0;PWNED\\x07\\x1b[2J\n", repr(out)
    client = _client(indexed / ".soundatlas")
    r = client.post("/api/curation/tags", json={"ids": [ids["mid/mid_060.wav"]]})
    assert r.status_code == 400 and "nothing to do" in r.json()["error"], r.text


def test_a_collection_holds_a_sound_at_every_path_the_library_holds_it(tmp_path):
    """A collection holds sounds: a copy of one at another path is in it (the sample panel
    says so), shown by its filter, and adding it again adds nothing."""
    lib = tmp_path / "lib"
    write_tone(lib / "kicks/k.wav", 110.0, seconds=0.2)
    write_tone(lib / "other/o.wav", 440.0, seconds=0.2)
    (lib / "copies").mkdir()
    shutil.copy(lib / "kicks/k.wav", lib / "copies/k.wav")
    index_library(lib, n_jobs=1)
    client = _client(lib / ".soundatlas")
    with Atlas.open(lib / ".soundatlas") as atlas:
        ids = _ids(atlas)
    k, copy, o = ids["kicks/k.wav"], ids["copies/k.wav"], ids["other/o.wav"]
    r = client.post("/api/collections/set/add?create=true", json={"ids": [k, o]})
    assert r.json()["added"] == 2
    assert client.post("/api/collections/set/add", json={"ids": [copy]}).json()["added"] == 0
    assert client.get(f"/api/curation/items?ids={copy}").json()["items"][0]["collections"] == [
        "set"]
    shown = client.get("/api/samples", params={"collection": "set"}).json()
    assert shown["ids"] == sorted([k, copy, o])
    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.collection_samples("set") == {k, copy, o}
        assert atlas.ids_with(collection="set") == {k, copy, o}
        # its sounds, in order, each by its first sample
        assert [sid for sid, _ in atlas.collection_members("set")] == [min(k, copy), o]
    # a tag or a star on a sound reaches its copy too, and the answer says how many copies
    r = client.post("/api/curation/tags", json={"ids": [k], "add": ["punchy"]}).json()
    assert r["copies"] == 1
    assert client.get(f"/api/curation/items?ids={copy}").json()["items"][0]["tags"] == [
        "punchy"]
    assert client.post("/api/curation/star", json={"ids": [k, copy, o]}).json()["copies"] == 0
    assert client.post("/api/curation/star", json={"ids": [o]}).json()["copies"] == 0
