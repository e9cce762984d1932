"""Fuzzing every parser (issue 16 §1), a bounded number of examples each: label manifests,
name patterns, synth path files, tags, kits, API parameters and bodies, uploads, OSC packets.
Each input gives a result or one clear error of the project's (a ParameterError, or a JSON 4xx
naming the problem): no other exception, no 500, nothing written by a rejected request.
``benchmarks/bench_fuzz.py`` runs the same properties with many more examples
(``SOUNDATLAS_FUZZ_EXAMPLES``)."""

from __future__ import annotations

import json
import os
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soundatlas.errors import SoundAtlasError

#: examples per property: 40 in the suite, more from ``benchmarks/bench_fuzz.py``
N_EXAMPLES = int(os.environ.get("SOUNDATLAS_FUZZ_EXAMPLES", "40"))
EXAMPLES = settings(max_examples=N_EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# text that looks like what the parsers meet: CSV punctuation, path parts, BOMs, odd unicode
_PIECES = st.sampled_from(["path", "instrument", "pitch", ",", '"', "\n", "\r\n", "\ufeff",
                           "../", "/", "a.wav", "C#4", "60", "x" * 50, "\x00", "é", " ", ";",
                           "tag", ":", "*", "\t"])
MESSY = st.one_of(st.text(max_size=200), st.lists(_PIECES, max_size=40).map("".join))


def _clear(exc: BaseException) -> bool:
    return isinstance(exc, SoundAtlasError) and str(exc).strip() != ""


@EXAMPLES
@given(st.one_of(MESSY.map(lambda t: t.encode("utf-8", "surrogatepass")),
                 st.binary(max_size=300)))
def test_a_label_manifest_reads_or_says_what_is_wrong(tmp_path_factory, data):
    from soundatlas.labels import read_manifest

    root = tmp_path_factory.mktemp("lib")
    (root / "a.wav").write_bytes(b"")
    csv = root / "metadata.csv"
    csv.write_bytes(data)
    try:
        m = read_manifest(csv, root)
    except Exception as exc:  # noqa: BLE001 (the property: only clear project errors)
        assert _clear(exc), repr(exc)
    else:
        assert all(isinstance(p, str) for p in m.problems)
        assert all(".." not in rel.split("/") for rel in m.labels)  # nothing outside the library


@EXAMPLES
@given(MESSY)
def test_a_name_pattern_compiles_or_says_what_is_wrong(text):
    from soundatlas.labels import compile_name_pattern

    try:
        compile_name_pattern(text)
    except Exception as exc:  # noqa: BLE001
        assert _clear(exc), repr(exc)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=6)
                       | st.dictionaries(st.text(max_size=10), inner, max_size=6),
                       max_leaves=30)


@EXAMPLES
@given(st.one_of(JSONISH.map(json.dumps), MESSY))
def test_a_synth_path_file_reads_or_says_what_is_wrong(tmp_path_factory, text):
    from soundatlas.synth.paths import read_path

    f = tmp_path_factory.mktemp("path") / "path.json"
    f.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_path(f, dims=3)
    except Exception as exc:  # noqa: BLE001
        assert _clear(exc), repr(exc)


@EXAMPLES
@given(MESSY)
def test_a_tag_parses_or_says_what_is_wrong(text):
    from soundatlas.atlas.curation import parse_tag

    try:
        key, value = parse_tag(text)
    except Exception as exc:  # noqa: BLE001
        assert _clear(exc), repr(exc)
    else:
        assert key and value and "," not in text


@EXAMPLES
@given(JSONISH)
def test_a_kit_reads_or_says_what_is_wrong(obj):
    from soundatlas.kits import Kit

    try:
        Kit.from_dict(obj)
    except Exception as exc:  # noqa: BLE001
        assert _clear(exc), repr(exc)


# -- the API ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from conftest import make_tone_library
    from soundatlas.indexing import index_library
    from soundatlas.web import create_app

    from soundatlas.artifact import resolve_model
    from soundatlas.atlas import Atlas
    from soundatlas.embed import embed_atlas, ensure_registered
    from soundatlas.indexing import cqt_for_model

    lib = make_tone_library(tmp_path_factory.mktemp("fuzz") / "lib")
    # embedded with the shipped model: an upload reaches the decoder, and the model's routes
    # their checks (without a model every one of them was a 404)
    index_library(lib, n_jobs=1, params=cqt_for_model(lib, None, "default"))
    with Atlas.open(lib / ".soundatlas", write=True) as atlas:
        artifact, registration = resolve_model(atlas, "default")
        embed_atlas(atlas, artifact, ensure_registered(atlas, artifact, registration))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(lib / ".soundatlas"), raise_server_exceptions=False), lib


def _answer_is_clear(r) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body.get("error"), str) and body["error"], body


PARAM = st.one_of(st.text(max_size=30), st.integers(-2**70, 2**70).map(str),
                  st.sampled_from(["", "-1", "1e309", "nan", "0x10", " 1", "1,2,x", "%00"]))


@EXAMPLES
@given(st.sampled_from(["/api/samples", "/api/samples/lookup", "/api/labels/{p}",
                        "/api/samples/{p}", "/api/samples/{p}/audio", "/api/files/{p}",
                        "/api/curation/items", "/api/collections/{p}",
                        "/api/models/{p}/points", "/api/models/default/neighbours/{p}",
                        "/api/models/default/trajectory/{p}"]),
       PARAM, st.dictionaries(st.sampled_from(["q", "label", "limit", "offset", "ids", "tempo",
                                               "key", "relative", "collection", "format"]),
                              PARAM, max_size=4))
def test_every_get_answers_or_names_the_problem(api, path, p, params):
    from urllib.parse import quote

    client, _ = api
    _answer_is_clear(client.get(path.replace("{p}", quote(p, safe="") or "x"), params=params))


WRITES = ["/api/curation/tags", "/api/curation/star", "/api/collections",
          "/api/collections/kit/add", "/api/kits/export", "/api/export",
          "/api/samples/lookup"]


@EXAMPLES
@given(st.sampled_from(WRITES), st.one_of(JSONISH, st.dictionaries(
    st.sampled_from(["ids", "add", "remove", "starred", "name", "format", "lanes", "tempo"]),
    JSONISH, max_size=4)))
def test_every_body_is_checked_and_a_refused_one_writes_nothing(api, path, body):
    from soundatlas.atlas import Atlas

    client, lib = api
    with Atlas.open(lib / ".soundatlas") as atlas:
        before = (atlas.tag_rows(), atlas.collections())
    # json.dumps writes NaN and Infinity, which strict JSON has not: the server meets them too
    r = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    _answer_is_clear(r)
    if r.status_code >= 400:
        with Atlas.open(lib / ".soundatlas") as atlas:
            assert (atlas.tag_rows(), atlas.collections()) == before


@EXAMPLES
@given(st.binary(max_size=2000), st.sampled_from(["x.wav", "x.flac", "x.aiff", "x.mp3", "x"]))
def test_an_upload_of_random_bytes_is_a_clear_400(api, data, name):
    client, _ = api
    r = client.post("/api/models/default/query", files={"file": (name, data)})
    _answer_is_clear(r)
    assert r.status_code == 400, r.text  # not audio: the decoder's refusal, in words


# -- OSC -------------------------------------------------------------------------------------


@EXAMPLES
@given(st.binary(max_size=200), st.sampled_from(["/soundatlas/cursor", "/soundatlas/play",
                                                 "/soundatlas/select", "/soundatlas/nope"]),
       st.lists(st.one_of(st.floats(width=32), st.integers(-2**31, 2**31 - 1),
                          st.text(max_size=10),
                          st.booleans()), max_size=20))
def test_osc_packets_give_an_event_or_an_error_never_an_exception(raw, address, args):
    from pythonosc.parsing import osc_types

    from soundatlas.web.osc import Endpoint, EventHub, OscIn

    # the message encoded by hand: python-osc's builder parses what it built, and refuses the
    # very packets (a NUL inside a string) a sender on the network may still send
    tags, payload = ",", b""
    for a in args:
        if isinstance(a, bool):
            tags += "T" if a else "F"
        elif isinstance(a, int):
            tags, payload = tags + "i", payload + osc_types.write_int(a)
        elif isinstance(a, float):
            tags, payload = tags + "f", payload + osc_types.write_float(a)
        else:
            tags, payload = tags + "s", payload + osc_types.write_string(a)
    message = osc_types.write_string(address) + osc_types.write_string(tags) + payload

    hub = EventHub()
    seen = []
    hub.publish = lambda event: seen.append(event)  # noqa: E731 (what reaches the page)
    osc = OscIn(Endpoint("127.0.0.1", 0), hub)
    try:
        osc.dispatcher.call_handlers_for_packet(raw, ("127.0.0.1", 1))
        assert seen, "a packet always gives an event or an error event"
        seen.clear()
        osc.dispatcher.call_handlers_for_packet(message, ("127.0.0.1", 1))
    finally:
        osc.stop()
    assert seen, "a packet always gives an event or an error event"
    assert all(isinstance(e, dict) and e.get("type") for e in seen)


@EXAMPLES
@given(st.one_of(JSONISH, st.fixed_dictionaries({"architecture": JSONISH}),
                 st.fixed_dictionaries({"architecture": st.fixed_dictionaries(
                     {"arch": st.sampled_from(["paper", "nope", 3]), "dims": JSONISH})})))
def test_a_models_config_loads_or_says_what_is_wrong(tmp_path_factory, config):
    import shutil

    from soundatlas.artifact import ModelArtifact, shipped_model_dir

    d = tmp_path_factory.mktemp("model") / "m"
    shutil.copytree(shipped_model_dir("default"), d)
    (d / "config.json").write_text(json.dumps(config))
    try:
        ModelArtifact.load(d)
    except Exception as exc:  # noqa: BLE001
        assert _clear(exc), repr(exc)


# -- audio files: truncated and lying headers of the formats libsndfile reads ---------------------

_FORMATS = {"WAV": ("wav", "PCM_16"), "AIFF": ("aiff", "PCM_16"), "FLAC": ("flac", "PCM_16"),
            "OGG": ("ogg", "VORBIS"), "AU": ("au", "PCM_16"), "CAF": ("caf", "PCM_16"),
            "W64": ("w64", "PCM_16"), "RF64": ("rf64", "PCM_16"), "IRCAM": ("sf", "PCM_16"),
            "NIST": ("nist", "PCM_16"), "VOC": ("voc", "PCM_16"), "WAVEX": ("wav", "PCM_16")}


def _valid_file(fmt: str) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    ext, subtype = _FORMATS[fmt]
    t = np.arange(8000) / 8000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, format=fmt,
             subtype=subtype)
    return buf.getvalue()


_VALID: dict[str, bytes] = {}


@EXAMPLES
@given(st.sampled_from(sorted(_FORMATS)), st.floats(0, 1),
       st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)), max_size=6),
       st.booleans())
def test_a_truncated_or_lying_audio_file_decodes_or_says_why(tmp_path_factory, fmt, keep,
                                                             flips, huge):
    """A file of each format, cut anywhere and with bytes of its header changed (or its WAV
    data size claiming 4 GB): decoded to finite samples, or one AudioReadError with a reason;
    never another exception, never a hang (what is decoded is capped by max_duration)."""
    import numpy as np

    from soundatlas import audio
    from soundatlas.errors import AudioReadError

    if fmt not in _VALID:
        _VALID[fmt] = _valid_file(fmt)
    data = bytearray(_VALID[fmt][: max(0, int(len(_VALID[fmt]) * keep))])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    if huge and fmt == "WAV" and len(data) >= 44:
        data[40:44] = b"\xff\xff\xff\xff"  # the data chunk says 4 GB
    f = tmp_path_factory.mktemp("audio") / f"x.{_FORMATS[fmt][0]}"
    f.write_bytes(bytes(data))
    try:
        a = audio.load(f, sr=16000, max_duration=2.0)
    except AudioReadError as exc:
        assert exc.reason
    else:
        assert np.isfinite(a.y).all() and a.duration <= 2.0 + 1e-6


# -- a small upload that decodes to gigabytes --------------------------------------------------


def test_an_audio_bomb_decodes_only_what_it_needs(api, tmp_path):
    """A FLAC of 8 channels at 192 kHz and 64 s of silence: about 1 MB that decodes to 393 MB.
    `audio.load` (what `index`, uploads and mosaics use) reads the first 30 s mixed to mono
    block by block, so the peak memory stays a fraction of the whole decode; the query
    endpoint answers it."""
    import tracemalloc

    import numpy as np

    import soundfile as sf

    from soundatlas import audio

    bomb = tmp_path / "bomb.flac"
    sr, channels, seconds = 192_000, 8, 64
    with sf.SoundFile(bomb, "w", samplerate=sr, channels=channels, format="FLAC",
                      subtype="PCM_16") as f:
        block = np.zeros((sr, channels), dtype=np.int16)
        for _ in range(seconds):
            f.write(block)
    whole = sr * channels * seconds * 4  # float32, every channel
    assert bomb.stat().st_size < whole / 100
    tracemalloc.start()
    try:
        a = audio.load(bomb, sr=16000, min_duration=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert a.truncated and a.duration == pytest.approx(30.0) and a.n_channels == channels
    assert peak < whole / 4, f"peak {peak / 2**20:.0f} MiB for a {whole / 2**20:.0f} MiB decode"
    client, _ = api
    r = client.post("/api/models/default/query", files={"file": ("bomb.flac",
                                                                 bomb.read_bytes())})
    _answer_is_clear(r)
