"""CLI conventions: help everywhere, --json, exit status 0/1/2, one line per problem."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_in_process, write_tone

from soundatlas.cli import build_parser, main

BIN = Path(sys.executable).parent / "soundatlas"
COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001


def run(*args, check_rc=None, cwd=None, env=None):
    # CI=1 as on the CI machine: some libraries (pyfluidsynth) print to stdout when it is set,
    # and stdout must stay clean for --json.
    env = {**os.environ, "CI": "1", **(env or {})}
    proc = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.stdout, proc.stderr)
    return proc


def test_top_level_help_lists_every_command():
    out = run("--help", check_rc=0).stdout
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_describes_every_option(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    parser = build_parser()._subparsers._group_actions[0].choices[command]  # noqa: SLF001
    for action in parser._actions:  # noqa: SLF001
        if action.help == argparse.SUPPRESS:  # a hidden alias: another spelling of a shown option
            assert any(a.dest == action.dest and a.help != argparse.SUPPRESS
                       for a in parser._actions), f"{command} {action.dest} is only hidden"  # noqa: SLF001
            continue
        for flag in action.option_strings:
            assert flag in out
        assert action.help, f"{command} {action.dest} has no help text"


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "soundatlas", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("soundatlas ")


def test_misuse_exits_2_with_one_message():
    proc = run("index", check_rc=2)
    assert "LIBRARY" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("index", "x", "--batch-size", "0", check_rc=2)
    assert "must be at least 1" in proc.stderr
    run("no-such-command", check_rc=2)


def test_user_errors_exit_1_with_one_line_and_no_traceback(tmp_path):
    proc = run("index", tmp_path / "missing", check_rc=1)
    assert proc.stderr.strip().count("\n") == 0 and "not a folder" in proc.stderr
    proc = run("info", "--atlas", tmp_path, check_rc=1)
    assert "no atlas" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("demo-library", tmp_path / "out", "--soundfont", tmp_path / "none.sf2", check_rc=1)
    assert "none.sf2" in proc.stderr and proc.stderr.strip().count("\n") == 0
    proc = run("demo-library", tmp_path / "out", "--classes", "kazoo", check_rc=2)  # misuse
    assert "kazoo" in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_index_and_info_json(tone_library):
    proc = run("index", tone_library, "--json", "-q", "--jobs", "1", check_rc=0)
    summary = json.loads(proc.stdout)
    assert summary["n_indexed"] == 18 and summary["n_failed"] == 0
    info = json.loads(run("info", "--atlas", tone_library / ".soundatlas", "--json", check_rc=0).stdout)
    assert info["n_samples"] == 18 and set(info["labels"]["instrument"]) == {"low", "mid", "high"}
    assert info["disk_bytes"] > 0 and info["last_index"]["status"] == "done"


def test_a_relative_atlas_path_opens_read_only(tone_library):
    run("index", tone_library, "-q", "--jobs", "1", check_rc=0)
    info = json.loads(run("info", "--atlas", ".soundatlas", "--json", check_rc=0,
                          cwd=tone_library).stdout)
    assert info["n_samples"] == 18


def test_index_summary_names_failures(tone_library):
    (tone_library / "mid" / "broken.wav").write_bytes(b"")
    proc = run("index", tone_library, "-q", "--jobs", "1", check_rc=0)
    assert "failed 1" in proc.stdout and "mid/broken.wav: empty" in proc.stdout
    text = run("info", "--atlas", tone_library / ".soundatlas", check_rc=0).stdout
    assert "mid/broken.wav" in text and "samples  18" in text
    # the next run leaves it alone and says so, still naming it; --retry-failed reads it
    proc = run("index", tone_library, "-q", "--jobs", "1", check_rc=0)
    assert "1 file that could not be decoded before and has not changed" in proc.stdout
    assert "mid/broken.wav: empty" in proc.stdout
    summary = json.loads(run("index", tone_library, "-q", "--jobs", "1", "--retry-failed",
                             "--json", check_rc=0).stdout)  # the same failure is not a new one
    assert (summary["n_failed_unchanged"], summary["n_failed"], summary["n_failed_new"]) == \
        (0, 1, 0)


def test_a_run_that_indexes_none_of_what_it_analysed_fails(tone_library, tmp_path, capsys):
    """A few unreadable files among good ones are listed and the run succeeds; a run whose every
    analysed file failed, or that leaves an atlas of failures only, exits 1 naming the first."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"not audio at all")
    (bad / "b.flac").write_bytes(b"")
    proc = run_in_process(capsys, "index", bad, "-q", "--jobs", "1")
    assert proc.returncode == 1 and "failed 2" in proc.stdout, proc
    assert "index: error: nothing new could be indexed: 2 new failures (the first, a.wav: not " \
        "audio" in proc.stderr, proc.stderr
    proc = run_in_process(capsys, "index", bad, "-q", "--jobs", "1")  # not read again
    assert proc.returncode == 1 and "the atlas holds no sample: its 2 files all failed" \
        in proc.stderr and "--retry-failed" in proc.stderr, proc.stderr
    proc = run_in_process(capsys, "map", bad, "-q", "--jobs", "1", "--json")
    assert proc.returncode == 1 and "the atlas holds no sample" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["index"]["n_failed"] == 2 and "embed" not in proc.stdout

    # a library with samples: one new file that cannot be read is the run's whole work, failed;
    # map still embeds the samples the atlas holds, then says so
    assert run_in_process(capsys, "index", tone_library, "-q", "--jobs", "1").returncode == 0
    (tone_library / "mid" / "new.wav").write_bytes(b"RIFF")
    proc = run_in_process(capsys, "map", tone_library, "-q", "--jobs", "1", "--json")
    assert proc.returncode == 1 and ": 1 new failure (the first" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["embed"]["n_embedded"] == 18
    proc = run_in_process(capsys, "index", tone_library, "-q", "--jobs", "1")  # nothing new
    assert proc.returncode == 0 and "mid/new.wav" in proc.stdout, proc
    # a failure tried again on every run (a broken link) fails the run that first meets it
    # only, and is the one named, not an older failure listed before it
    (tone_library / "mid" / "zz-dangling.wav").symlink_to(tone_library / "nowhere.wav")
    proc = run_in_process(capsys, "index", tone_library, "-q", "--jobs", "1")
    assert proc.returncode == 1 and "1 new failure (the first, mid/zz-dangling.wav: broken " \
        "symlink" in proc.stderr, proc
    proc = run_in_process(capsys, "index", tone_library, "-q", "--jobs", "1")
    assert proc.returncode == 0 and "mid/zz-dangling.wav" in proc.stdout, proc
    # a drive not mounted this time: its samples are kept, and that is no failure of the run
    write_tone(tmp_path / "drive" / "far.wav", 700.0, seconds=0.3)
    (tone_library / "ext").symlink_to(tmp_path / "drive", target_is_directory=True)
    assert run_in_process(capsys, "index", tone_library, "-q", "--jobs", "1").returncode == 0
    (tmp_path / "drive").rename(tmp_path / "unmounted")
    proc = run_in_process(capsys, "index", tone_library, "-q", "--jobs", "1")
    assert proc.returncode == 0 and "1 sample kept as it was" in proc.stdout, proc
    a_tone = next((tone_library / "mid").glob("*.wav"))
    (tone_library / "low" / "also-new.wav").write_bytes(a_tone.read_bytes())
    proc = run_in_process(capsys, "index", tone_library, "-q", "--jobs", "1", "--retry-failed")
    assert proc.returncode == 0 and "indexed 1 " in proc.stdout, proc  # one of two read


def test_file_names_that_would_drive_the_terminal_are_shown_escaped(tone_library):
    odd = "mid/esc\x1b[31mRED\x1b[0m\nline.wav"
    (tone_library / odd).write_bytes(b"not audio at all")
    for command in (("index", tone_library, "-q", "--jobs", "1"),
                    ("info", "--atlas", tone_library / ".soundatlas")):
        out = run(*command, check_rc=0).stdout
        assert "\x1b" not in out and "esc\\x1b[31mRED\\x1b[0m\\nline.wav: not audio" in out, out
    err = run("star", "--atlas", tone_library / ".soundatlas", odd, check_rc=2).stderr
    assert "\x1b" not in err and len(err.strip().splitlines()) == 1, err
    from soundatlas.cli.common import shown  # names stay pasteable: only what drives a terminal

    kept = "ドラム\u3000キック a\xa0b 👩\u200d💻.wav"
    assert shown(kept) == kept and shown("a\u202eb") == "a\\u202eb"


def test_models_remove_forgets_a_model_its_embeddings_and_its_folder(tone_library):
    atlas = tone_library / ".soundatlas"
    run("index", tone_library, "-q", "--jobs", "1", check_rc=0)
    run("train", "--atlas", atlas, "-n", "instrument", "--iterations", "10", "--name", "m",
        "--threads", "1", "-q", check_rc=0)
    run("embed", "--atlas", atlas, "-m", "m", "-q", check_rc=0)
    files = set((atlas / "embeddings").iterdir())
    assert files and (atlas / "models/m").is_dir()
    out = json.loads(run("models", "--atlas", atlas, "--remove", "m", "--json", check_rc=0).stdout)
    assert out == {"removed": "m", "n_embedded": 18, "folder": str(atlas / "models/m")}
    assert not (atlas / "models/m").exists() and not set((atlas / "embeddings").iterdir())
    names = [r["name"] for r in json.loads(run("models", "--atlas", atlas, "--json").stdout)]
    assert "m" not in names
    run("check", "--atlas", atlas, "-q", check_rc=0)  # nothing left behind
    err = run("models", "--remove", "m", "--atlas", atlas, check_rc=2).stderr
    assert "no model named 'm'" in err
    # the name is free again
    run("train", "--atlas", atlas, "-n", "instrument", "--iterations", "10", "--name", "m",
        "--threads", "1", "-q", check_rc=0)


def test_demo_library_cli_renders_a_subset(tmp_path):
    proc = run("demo-library", tmp_path / "demo", "--classes", "piccolo", "--velocities", "80",
               "--json", check_rc=0)
    summary = json.loads(proc.stdout)
    assert summary["n_files_written"] == 2 * (108 - 74 + 1)
    rows = (tmp_path / "demo/metadata.csv").read_text().splitlines()
    assert rows[0] == "path,instrument,pitch,velocity,articulation" and len(rows) == 71


def test_train_embed_models_evaluate_from_the_command_line(rendered_library):
    atlas = rendered_library / ".soundatlas"
    run("index", rendered_library, "--jobs", "1", "-q", check_rc=0)
    out = json.loads(run("train", "--atlas", atlas, "-n", "instrument", "--iterations", "30",
                         "--batch-size", "8", "--valid-every", "10", "--name", "m", "--json", "-q",
                         "--optimizer", "adam", "--lr", "0.001", "--schedule", "cosine",
                         "--warmup", "5", "--no-standardize", "--precision", "fp32",
                         check_rc=0).stdout)
    assert out["iterations"] == 30 and out["name"] == "m" and len(out["history"]) == 3
    settings = json.loads((atlas / "models/m/config.json").read_text())["settings"]
    assert (settings["optimizer"], settings["lr"], settings["schedule"], settings["warmup"],
            settings["standardize"], settings["precision"], settings["batch_size"]) == \
        ("adam", 0.001, "cosine", 5, False, "fp32", 8)
    emb = json.loads(run("embed", "--atlas", atlas, "--model", "m", "--json", "-q", check_rc=0).stdout)
    assert emb["n_embedded"] > 0
    models = json.loads(run("models", "--atlas", atlas, "--json", check_rc=0).stdout)
    assert models[0]["name"] == "m" and models[0]["n_embedded"] == emb["n_embedded"]
    shipped = {r["name"]: r for r in models if r["where"] == "shipped"}
    assert models[0]["pitch_axis"] is False and shipped["default"]["pitch_axis"] is True
    # stored figures name what they were measured on: the shipped one's, not this atlas
    assert shipped["default"]["metrics"] and "demo library" in \
        shipped["default"]["metrics_measured_on"]
    assert models[0]["metrics"] == {} and models[0]["metrics_measured_on"] is None
    listing = run("models", "--atlas", atlas, check_rc=0).stdout.splitlines()
    assert [line.split()[0] for line in listing if "height = measured pitch" in line] == ["default"]
    # a model fine-tuned from another names what it was trained from, the first phase first
    run("train", "--atlas", atlas, "-n", "instrument", "--iterations", "4", "--batch-size", "8",
        "--valid-every", "2", "--name", "m2", "--init-from", "m", "-q", check_rc=0)
    lineage = {r["name"]: r["lineage"] for r in
               json.loads(run("models", "--atlas", atlas, "--json", check_rc=0).stdout)}
    assert lineage["m"] == [] and lineage["m2"] == ["m"] and lineage["default"]  # shipped: phases
    listing = run("models", "--atlas", atlas, check_rc=0).stdout
    assert "2 phases: m -> this (the line above: the last phase)" in listing
    assert f"{len(lineage['default']) + 1} phases: {' -> '.join(lineage['default'])}" in listing
    ev = json.loads(run("evaluate", "--atlas", atlas, "--model", "m", "--baselines", "none",
                        "--json", check_rc=0).stdout)
    acc = ev["results"]["m"]["accuracy"]["instrument"]
    assert 0 <= acc["test_accuracy"] <= 1 and acc["k"] in (1, 5, 9, 15, 21, 35, 51, 75, 101)
    # misuse and user errors
    run("train", "--atlas", atlas, "-n", "banana", check_rc=2)
    proc = run("embed", "--atlas", atlas, "--model", "nope", check_rc=1)
    assert "no model 'nope'" in proc.stderr
    proc = run("train", "--atlas", atlas, "-n", "instrument", "--label", "colour", check_rc=1)
    assert "colour" in proc.stderr and "Traceback" not in proc.stderr


def test_the_readme_documents_every_command():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for command in COMMANDS:
        assert f"### `soundatlas {command}" in readme or f"`soundatlas {command}`" in readme, command


@pytest.mark.parametrize("command", ["synth", "mosaic"])
def test_sample_rate_has_one_spelling_and_the_old_one_still_works(command, capsys):
    parser = build_parser()
    head = [command, "t.wav"] if command == "mosaic" else [command]
    for flag in ("--sample-rate", "--sr"):
        args = parser.parse_args([*head, flag, "22050", "-o", "x.wav"])
        assert args.sample_rate == 22050
    assert parser.parse_args([*head, "-o", "x.wav"]).sample_rate is None
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--sample-rate HZ" in out and "--sr" not in out


def test_every_training_setting_is_a_train_flag_generated_from_its_field(monkeypatch):
    """One edit in TrainSettings adds a setting: its flag follows from the field."""
    from dataclasses import dataclass, fields

    from soundatlas.cli import train_flags
    from soundatlas.train import TrainSettings

    train = build_parser()._subparsers._group_actions[0].choices["train"]  # noqa: SLF001
    dests = {a.dest for a in train._actions}  # noqa: SLF001
    for f in fields(TrainSettings):
        assert (f.name in dests) != (f.name in train_flags.NOT_ON_COMMAND_LINE), f.name

    @dataclass(frozen=True)
    class Wider(TrainSettings):
        toy_steps: int = 3
        toy_ratio: float | None = None
        toy_switch: bool = False

    asked = {}
    monkeypatch.setattr(train_flags, "TrainSettings", Wider)
    monkeypatch.setattr(train_flags, "settings_for", lambda preset, **kw: asked.update(kw))
    parser = build_parser()
    args = parser.parse_args(["train", "-n", "pitch", "--toy-steps", "5", "--toy-ratio", "0.5",
                              "--toy-switch"])
    train_flags.train_settings(args)
    assert (asked["toy_steps"], asked["toy_ratio"], asked["toy_switch"]) == (5, 0.5, True)
    assert asked["lr"] is None  # not given: the preset's
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "-n", "pitch", "--toy-steps", "0"])  # a count: at least 1


def test_a_command_is_one_register_function(capsys):
    """What a newcomer writes to add a command: a cmd_* function and its register()."""
    from types import SimpleNamespace

    from soundatlas.cli import COMMAND_MODULES, UsageError
    from soundatlas.cli.common import ATLAS, add_options, print_json

    def cmd_hello(args):
        if args.name == "nobody":
            raise UsageError("--name nobody: say who")
        print_json({"hello": args.name, "atlas": args.atlas}) if args.json else print("hi")
        return 0

    def register(sub, parents):
        p = sub.add_parser("hello", parents=parents, help="say hello")
        add_options(p, ATLAS)
        p.add_argument("--name", default="world", help="who")
        p.set_defaults(func=cmd_hello)

    toy = SimpleNamespace(register=register)
    assert main(["hello", "--json", "--atlas", "A"], modules=(*COMMAND_MODULES, toy)) == 0
    assert json.loads(capsys.readouterr().out) == {"hello": "world", "atlas": "A"}
    assert main(["hello", "--name", "nobody"], modules=(toy,)) == 2
    assert capsys.readouterr().err == "soundatlas hello: error: --name nobody: say who\n"


def test_serve_can_limit_the_allocators_arenas():
    """`serve` asks glibc for two malloc arenas (a soak's RSS crept with one per thread); the
    call takes where glibc is the C library (and says False elsewhere instead of failing)."""
    import platform

    from soundatlas.cli.serve import limit_malloc_arenas

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mallopt is what is tested; this C library is another")
    assert limit_malloc_arenas(2) is True


# -- a wrong argument is one line, before the work it would spoil ---------------------------------


def one_line(proc) -> str:
    """The stderr of a command that failed cleanly: one line, no traceback."""
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    return proc.stderr


def in_process(capsys, *args) -> tuple[int, str]:
    """``soundatlas ARGS`` run here, quicker than a process: its exit status and stderr (an
    exception that is not the package's own would fail the test)."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage error
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def mapped(tmp_path_factory) -> Path:
    """A tiny library (two flute pitches, short and long) mapped with the shipped model; the
    tests only read its atlas."""
    from conftest import map_with_shipped_model

    return map_with_shipped_model(tmp_path_factory.mktemp("mapped") / "lib",
                                  {"flute": (73, 60, 61)})


def test_cqt_writes_the_npy_file_it_reports_and_refuses_any_other_output(tmp_path, capsys):
    import numpy as np
    from conftest import write_tone

    tone = write_tone(tmp_path / "tone.wav", 440.0)
    (tmp_path / "d.npy").mkdir()
    for out, says in (("x.txt", "x.txt must end in .npy"),
                      ("somedir", "somedir must end in .npy"),  # np.save wrote somedir.npy
                      ("d.npy", "d.npy is a directory"),
                      ("nodir/x.npy", f"x.npy: the folder {tmp_path / 'nodir'} does not exist"),
                      ("t" * 300 + ".npy", "tt.npy: File name too long")):
        rc, err = in_process(capsys, "cqt", tone, "-o", tmp_path / out)
        assert rc == 2 and err.startswith(f"soundatlas cqt: error: --output {tmp_path}") and says in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy", "tone.wav"]
    # the very name given, in any case: np.save given the name alone adds .npy to x.NPY
    proc = run("cqt", tone, "-o", "x.NPY", check_rc=0, cwd=tmp_path)
    assert proc.stdout.startswith("x.NPY: ")
    assert np.load(tmp_path / "x.NPY").shape[1] == 192 and not (tmp_path / "x.NPY.npy").exists()


def test_a_bad_output_path_is_refused_before_the_work_and_a_failed_write_named(mapped, tmp_path,
                                                                               capsys):
    (tmp_path / "file").write_text("kept")
    # refused before the atlas is even opened: an evaluation is not run to be lost
    rc, err = in_process(capsys, "evaluate", "--atlas", tmp_path / "no-atlas",
                         "-o", tmp_path / "nodir/x.json")
    assert (rc, err) == (2, f"soundatlas evaluate: error: --output {tmp_path / 'nodir/x.json'}: the "
                            f"folder {tmp_path / 'nodir'} does not exist\n")
    rc, err = in_process(capsys, "evaluate", "--atlas", mapped, "-o", tmp_path)
    assert (rc, err) == (2, f"soundatlas evaluate: error: --output {tmp_path} is a directory\n")
    rc, err = in_process(capsys, "tags", "export", tmp_path / "file/t.csv", "--atlas", mapped)
    assert rc == 2 and f"the folder {tmp_path / 'file'} is not a folder" in err
    rc, err = in_process(capsys, "collections", "export", "k", "--atlas", mapped,
                         "-o", tmp_path / "nodir/k.m3u")
    assert rc == 2 and f"--output {tmp_path / 'nodir/k.m3u'}: the folder" in err
    proc = run("demo-library", tmp_path / "file", "--classes", "piccolo", check_rc=1)
    assert f"{tmp_path / 'file'} is a file" in one_line(proc)
    assert (tmp_path / "file").read_text() == "kept"
    # a write that fails after the check (a link to a folder that does not exist): one line
    # naming the file
    (tmp_path / "t.csv").symlink_to(tmp_path / "gone/t.csv")
    proc = run("tags", "export", tmp_path / "t.csv", "--atlas", mapped, check_rc=1)
    assert f"cannot write {tmp_path / 't.csv'}: No such file" in one_line(proc)


def test_mosaic_of_a_target_that_is_no_file_names_it(mapped, tmp_path):
    for target, reason in ((tmp_path / "nope.wav", "file does not exist"),
                           (tmp_path, "is a directory")):
        proc = run("mosaic", target, "--atlas", mapped, "-o", tmp_path / "o.wav", "-q",
                   check_rc=1)
        assert f"{target}: {reason}" in one_line(proc)
    assert not (tmp_path / "o.wav").exists()


def test_a_scheduler_that_does_not_answer_is_a_usage_error(mapped, tmp_path):
    import socket

    (tmp_path / "lib").mkdir()
    proc = run("index", tmp_path / "lib", "--scheduler", "garbage", check_rc=2)
    assert "--scheduler garbage: missing port number" in one_line(proc)
    assert not (tmp_path / "lib/.soundatlas").exists()  # refused before anything started
    with socket.socket() as s:  # a local port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    # Dask's own connect timeout, at 1 s instead of its 30 s, so that the test does not wait
    proc = run("embed", "--atlas", mapped, "--scheduler", address, check_rc=2,
               env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert f"--scheduler {address}: " in one_line(proc)


def test_train_refuses_a_momentum_or_learning_rate_that_cannot_work(tmp_path, capsys):
    from soundatlas.settings import PRESETS, settings_for

    for preset in PRESETS:
        assert settings_for(preset, momentum=0.9).momentum == 0.9
    for flag, value, says in (("--momentum", "-1", "momentum=-1.0 must be"),
                              ("--momentum", "nan", "momentum=nan must be"),
                              ("--momentum", "1", "momentum=1.0 must be"),
                              ("--lr", "inf", "lr=inf must be")):
        # refused before the atlas is opened
        rc, err = in_process(capsys, "train", "--atlas", tmp_path, "-n", "pitch", flag, value)
        assert rc == 2 and err.startswith(f"soundatlas train: error: {says}")  # misuse


def test_train_arguments_that_cannot_work_together_are_misuse(tmp_path, capsys):
    """Refused before the atlas is opened (tmp_path holds none), with exit 2: they exited 1,
    the code of a failure (the researcher's review)."""
    for args, says in (
            (("-n", "instrument,pitch", "--label", "folder"), "a single neighbourhood"),
            (("-n", "label:instrument", "--label", "folder"), "names its label already"),
            (("-n", "instrument", "--anchor", "2"), "there is none: give init_from"),
            (("-n", "teacher-map",), "teacher-map keeps the neighbours"),
            (("-n", "pitch:1,teacher-knn:1"), "teacher-knn keeps the neighbours"),
            (("-n", "instrument", "--name", "default"), "a model shipped with soundatlas")):
        rc, err = in_process(capsys, "train", "--atlas", tmp_path, *args)
        assert rc == 2 and err.startswith("soundatlas train: error: ") and says in err, (args,
                                                                                         err)
    rc, err = in_process(capsys, "evaluate", "--atlas", tmp_path, "--baselines", "none")
    assert rc == 2 and "nothing to evaluate: name a model (-m) or a baseline" in err
    rc, err = in_process(capsys, "demo-library", tmp_path / "lib", "--classes", "flutee")
    assert rc == 2 and "unknown class 'flutee'" in err and not (tmp_path / "lib").exists()


def test_the_weight_of_a_single_neighbourhood_is_checked_as_in_a_mixture(tmp_path, capsys):
    rc, err = in_process(capsys, "train", "--atlas", tmp_path, "-n", "label:family:-3")
    assert rc == 2 and "the weight of label:family is -3.0; it must be a finite number > 0" in err
    rc, err = in_process(capsys, "adapt", "--atlas", tmp_path, "-n", "teacher-map:-1")
    assert rc == 2 and "the weight of teacher-map is -1.0" in err
    for args, says in ((("-n", "instrument"), "needs labels"), (("--augment", "bogus"), "bogus"),
                       (("--lr", "inf"), "lr=inf"), (("--minutes", "inf"), "finite")):
        rc, err = in_process(capsys, "adapt", "--atlas", tmp_path, *args)
        assert rc == 2 and says in err, (args, err)


def test_suggest_limit_is_a_count(tmp_path, capsys):
    assert build_parser().parse_args(["suggest", "-l", "tag", "--limit", "0"]).limit == 0
    rc, err = in_process(capsys, "suggest", "--atlas", tmp_path, "-l", "tag", "--limit", "-2")
    assert rc == 2 and "--limit: -2 must not be negative" in err


def test_suggest_says_when_few_labelled_samples_cap_the_confidence(mapped, tmp_path, capsys):
    """Few labelled samples of each value: no confidence can reach 1, and suggest says so
    (every confidence tied read as a measure of nothing), and which -k tells them apart; with
    one a value, no -k does."""
    import shutil

    from soundatlas.atlas import Atlas

    atlas = tmp_path / "atlas"
    shutil.copytree(mapped, atlas)
    with Atlas.open(atlas, write=True) as a:
        ids = sorted(a.sample_ids().tolist())
        assert len(ids) >= 4
        a.tag(ids[:1], add=["kind:a"])
        a.tag(ids[1:2], add=["kind:b"])
    assert main(["suggest", "--atlas", str(atlas), "-l", "kind", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "each value of kind is on one labelled sample: the confidences cannot tell" in out
    with Atlas.open(atlas, write=True) as a:
        a.tag(ids[2:3], add=["kind:a"])
    assert main(["suggest", "--atlas", str(atlas), "-l", "kind", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert ("no value of kind is on more than 2 labelled samples, so no confidence can exceed "
            "2/3 = 0.67; -k 2") in out, out
    assert main(["suggest", "--atlas", str(atlas), "-l", "kind", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "suggestion" in out and "no confidence can exceed" not in out, out


def test_an_interrupted_command_says_how_to_go_on(capsys):
    """Ctrl-C: train and adapt keep their checkpoint but start again without --resume, so they
    say so; index, embed and map go on when run again; the rest only say they stopped."""
    import argparse

    from soundatlas.cli.common import run_command

    def interrupted(args):
        raise KeyboardInterrupt

    said = {}
    for command, extra in (("train", {"resume": False}), ("adapt", {"resume": False}),
                           ("index", {}), ("embed", {}), ("map", {}), ("evaluate", {})):
        args = argparse.Namespace(command=command, func=interrupted, **extra)
        assert run_command(args) == 130
        said[command] = capsys.readouterr().err
    for command in ("train", "adapt"):
        assert "run the same command with --resume" in said[command]
    for command in ("index", "embed", "map"):
        assert said[command] == f"soundatlas {command}: interrupted; run it again to go on: " \
                                "what it finished is kept\n"
    assert said["evaluate"] == "soundatlas evaluate: interrupted\n"
    # embed --again starts over when run again: the way on is without it
    assert run_command(argparse.Namespace(command="embed", func=interrupted, again=True)) == 130
    assert "run it again without --again to go on" in capsys.readouterr().err
    assert all(hasattr(build_parser().parse_args([c, *a]), "resume")
               for c, a in (("train", ["-n", "pitch"]), ("adapt", [])))


def test_quiet_hides_progress_bars_not_results(mapped, tmp_path, capsys):
    """-q is "no progress bars" (README, --help): what a command did is printed all the same."""
    import shutil

    atlas = tmp_path / "atlas"
    shutil.copytree(mapped, atlas)
    rc = main(["check", "--atlas", str(atlas), "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("ok: ") and "problem" in out
    rc = main(["star", "1", "--atlas", str(atlas), "-q"])
    assert rc == 0 and "1" in capsys.readouterr().out


def test_an_unknown_model_is_named_with_each_known_model_once(mapped, capsys):
    """An atlas embedded with the shipped default registers it too: the list says it once."""
    rc, err = in_process(capsys, "embed", "--atlas", mapped, "--model", "nope")
    assert rc == 1 and "no model 'nope' (known: default)" in err, err


def test_map_names_a_model_that_is_not_there_before_indexing(tmp_path, capsys):
    """`map LIBRARY --model defualt`: the typo is named before the library is indexed (it was
    named after the whole library had been), for a new atlas and for one already there."""
    from conftest import write_tone

    lib = tmp_path / "lib"
    write_tone(lib / "a.wav", 220.0, seconds=0.3)
    rc, err = in_process(capsys, "map", str(lib), "--model", "defualt", "-q")
    assert rc == 1 and "no model 'defualt' (known: default)" in err, err
    assert not (lib / ".soundatlas").exists()  # nothing indexed
    rc, _ = in_process(capsys, "index", str(lib), "-q")
    assert rc == 0
    write_tone(lib / "b.wav", 330.0, seconds=0.3)
    rc, err = in_process(capsys, "map", str(lib), "--model", "defualt", "-q")
    assert rc == 1 and "no model 'defualt'" in err, err
    from soundatlas.atlas import Atlas

    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.n_samples() == 1  # b.wav waits for a run that can embed it


def test_collections_and_tags_take_the_atlas_before_or_after_the_action(mapped, capsys):
    """`collections --atlas A` (the default action, list), `collections --atlas A list` and
    `collections list --atlas A` all read A; so does `tags`."""
    for command in ("collections", "tags"):
        for argv in ([command, "--atlas", mapped], [command, "--atlas", mapped, "list"],
                     [command, "list", "--atlas", mapped]):
            rc, err = in_process(capsys, *argv)
            # (an atlas without collections says so on stderr)
            assert rc == 0 and err in ("", "no collections yet: `soundatlas collections add "
                                           "NAME ITEMS` makes one\n"), (argv, err)
    rc, err = in_process(capsys, "collections", "--atlas", mapped / "nowhere")
    assert rc == 1 and "nowhere" in err
    # --json before the action or for the default one, as --atlas
    for argv in (["tags", "--json", "--atlas", mapped], ["tags", "--json", "--atlas", mapped,
                                                         "list"]):
        assert main([str(a) for a in argv]) == 0
        assert set(json.loads(capsys.readouterr().out)) == {"tags", "starred"}, argv
    assert main(["collections", "--json", "--atlas", str(mapped)]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), (list, dict))


def test_similar_answers_as_the_pages_nearest_sounds_for_a_sample_or_an_outside_file(
        mapped, tmp_path, capsys, monkeypatch):
    """`similar ID` lists what the page's API answers for that sample; `similar FILE`, a copy
    of a sample kept outside the library, finds that sample first, at distance 0, and is
    named as it is; a sample typed from the working folder is that sample; a path that is
    neither, and a file that is not audio, are named, with the reason."""
    import shutil

    from soundatlas.atlas import Atlas

    with Atlas.open(mapped) as atlas:
        records = atlas.samples()
        first, library = records[0], atlas.library
    rc = main(["similar", str(first.id), "--atlas", str(mapped), "-k", "3", "--json"])
    answer = json.loads(capsys.readouterr().out)
    rc_api = main(["serve", "--atlas", str(mapped), "--get",
                   f"/api/models/default/neighbours/{first.id}?k=3"])
    api = capsys.readouterr().out
    api = json.loads(api[api.index("{"):])
    assert rc == rc_api == 0
    assert [n["id"] for n in answer["neighbours"]] == [n["id"] for n in api["neighbours"]]
    assert len(answer["neighbours"]) == 3 and first.id not in [n["id"]
                                                               for n in answer["neighbours"]]
    outside = tmp_path / 'é "q" 50%.wav'
    shutil.copy(library / first.path, outside)
    assert main(["similar", str(outside), "--atlas", str(mapped), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert f"nearest 2 to {outside} (a file outside the atlas), model default" in out
    top = out.splitlines()[1].split()
    assert top[0] == "1" and float(top[1]) < 1e-3 and int(top[2]) == first.id, out
    # the outside file is that sample's file, already in the library; the next is not
    assert out.splitlines()[1].endswith("[the same file]")
    assert "[the same file]" not in out.splitlines()[2]
    assert main(["similar", str(outside), "--atlas", str(mapped), "-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["file"] == str(outside)
    monkeypatch.chdir(library.parent)
    rel = (library / first.path).relative_to(library.parent)
    assert main(["similar", str(rel), "--atlas", str(mapped), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert f"nearest 2 to {first.path}, model default" in out, out
    rc, err = in_process(capsys, "similar", str(tmp_path / "nowhere.wav"), "--atlas", mapped)
    assert rc == 2 and "names no sample of the atlas" in err, err
    folder = str(Path(first.path).parent)  # a folder, even of one sample, is no one sound
    rc, err = in_process(capsys, "similar", folder, "--atlas", mapped)
    assert rc == 2 and f"{folder} is a folder" in err, err
    (tmp_path / "notes.wav").write_text("not audio")
    rc, err = in_process(capsys, "similar", str(tmp_path / "notes.wav"), "--atlas", mapped)
    assert rc == 1 and f"error: {tmp_path / 'notes.wav'}: notes.wav: " in err, err
    assert "Traceback" not in err and "{" not in err, err


def test_counts_in_words_are_singular_for_one_and_times_read_as_people_say_them():
    from soundatlas.cli.library import print_index_summary
    from soundatlas.indexing import IndexSummary
    from soundatlas.text import counted, span

    assert (counted(1, "file"), counted(0, "file"), counted(2, "class", "classes")) == (
        "1 file", "0 files", "2 classes")
    assert (span(3.04), span(270), span(9000)) == ("3.0 s", "4.5 min", "2.50 h")
    assert (span(59.97), span(3599)) == ("1.0 min", "1.00 h")  # not "60.0 s", "60.0 min"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_index_summary(IndexSummary(library="l", atlas="a", n_samples=1, n_frames=1,
                                         n_indexed=1, seconds=2.4, n_truncated=1,
                                         truncated=["x.wav"], max_duration=30.0))
    text = out.getvalue()
    assert "atlas a: 1 sample, 1 frame" in text and "(2.4 s, 0.4 files/s)" in text
    assert "1 long file: only the first 30 s analysed" in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_index_summary(IndexSummary(library="l", atlas="a", n_rehashed=1,
                                         n_failed_unchanged=1))
    text = out.getvalue()
    assert "1 long file hashed whole (an older soundatlas hashed its size, head and tail); " \
        "its tags" in text
    assert "1 file that could not be decoded before and has not changed since was not read " \
        "again (--retry-failed reads it)" in text


def test_a_library_given_as_the_atlas_names_its_atlas(tone_library, capsys):
    """`info --atlas LIBRARY`: the library's own atlas is named, with the option to give."""
    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)
    rc, err = in_process(capsys, "info", "--atlas", tone_library)
    inside = tone_library / ".soundatlas"
    assert rc == 1 and (f"no atlas at {tone_library}: it is a library, whose atlas is {inside} "
                        f"(--atlas {inside})") in err, err


def test_a_mistyped_option_is_named_with_its_commands_usage_and_a_bare_call_gets_help(capsys):
    """`index LIB --jbos 2`: the usage shown is index's (it was soundatlas's, which names no
    option of index), also for an action (`collections list --bogus`); `soundatlas` alone
    prints the help, not only that a command is missing."""
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "Navigable 3-D maps" in err and "index" in err and "serve" in err
    for argv, usage, extra in (
            (["index", "lib", "--jbos", "2"], "usage: soundatlas index ", "--jbos 2"),
            (["collections", "list", "--bogus"], "usage: soundatlas collections list", "--bogus")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith(usage), err
        assert f"error: unrecognized arguments: {extra}" in err


def test_a_run_paused_before_its_first_log_says_so_not_nan(tone_library, capsys):
    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)
    rc = main(["train", "--atlas", str(tone_library / ".soundatlas"), "-n", "label:folder",
               "--iterations", "50", "--stop-after", "2", "--batch-size", "4", "--name", "p",
               "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "paused" in out and "2/50 iterations" in out
    assert "no loss logged yet (every 1000 iterations)" in out and "nan" not in out


def test_curation_items_of_digits_are_a_folder_where_no_sample_has_that_id(tmp_path, capsys):
    """`tag 808 --add x` tags the folder 808/ (there is no sample 808); digits that are both
    an id and a folder are refused naming both; `5/` is always the folder."""
    from conftest import write_tone
    from soundatlas.indexing import index_library

    lib = tmp_path / "lib"
    for i, rel in enumerate(("808/kick.wav", "808/snare.wav", "2/hat.wav", "low/a.wav")):
        write_tone(lib / rel, 220.0 + 110 * i, seconds=0.2)  # each its own content
    index_library(lib, n_jobs=1)
    atlas = str(lib / ".soundatlas")
    assert main(["tag", "808", "--add", "boom", "--atlas", atlas]) == 0
    assert "2 samples" in capsys.readouterr().out
    rc, err = in_process(capsys, "star", "2", "--atlas", atlas)  # sample 2 and the folder 2/
    assert rc == 2 and "2 is both sample 2" in err and "give 2/ for the folder" in err
    assert main(["star", "2/", "--atlas", atlas]) == 0
    from soundatlas.atlas import Atlas

    with Atlas.open(lib / ".soundatlas") as a:
        tagged = {r.path for r in a.samples() if a.sample_labels(r.id).get("tag") == "boom"}
        starred = {r.path for r in a.samples() if a.sample_labels(r.id).get("starred")}
    assert tagged == {"808/kick.wav", "808/snare.wav"} and starred == {"2/hat.wav"}


def test_curation_items_relative_to_the_working_folder_name_their_samples(tmp_path, capsys,
                                                                          monkeypatch):
    """`tag lib/d/a.wav` typed from the library's parent folder (as a shell completes it), and
    through a link to a folder of the library: the sample. One relative to the library wins
    where both name a file; one outside the library is refused naming it."""
    from conftest import write_tone
    from soundatlas.atlas import Atlas
    from soundatlas.indexing import index_library

    lib = tmp_path / "lib"
    write_tone(lib / "d/a.wav", 220.0, seconds=0.2)
    write_tone(lib / "lib/d/a.wav", 330.0, seconds=0.2)  # lib/d/a.wav inside the library too
    (tmp_path / "outside.wav").write_bytes(b"")
    index_library(lib, n_jobs=1)
    (tmp_path / "link").symlink_to(lib / "d")
    monkeypatch.chdir(tmp_path)
    atlas = str(lib / ".soundatlas")
    assert main(["tag", "lib/d/a.wav", "--add", "inner", "--atlas", atlas, "-q"]) == 0
    assert main(["tag", "link/a.wav", "--add", "linked", "--atlas", atlas, "-q"]) == 0
    rc, err = in_process(capsys, "tag", "outside.wav", "--add", "x", "--atlas", atlas)
    assert rc == 2 and "no samples at: outside.wav" in err, err
    with Atlas.open(lib / ".soundatlas") as a:
        tags = {r.path: a.sample_labels(r.id).get("tag") for r in a.samples()}
    assert tags == {"lib/d/a.wav": "inner", "d/a.wav": "linked"}
    monkeypatch.chdir(lib / "d")  # in a folder of the library: `.` is that folder
    assert main(["star", ".", "--atlas", atlas, "-q"]) == 0
    with Atlas.open(lib / ".soundatlas") as a:
        starred = {r.path for r in a.samples() if a.sample_labels(r.id).get("starred")}
    assert starred == {"d/a.wav"}
    (lib / "new").mkdir()  # a folder nothing of which is indexed yet: no sample, not all
    monkeypatch.chdir(lib / "new")
    rc, err = in_process(capsys, "star", ".", "--atlas", atlas)
    assert rc == 2 and "no samples at: ." in err, err


def test_a_zip_export_that_fails_names_the_file_and_leaves_no_part_file(tmp_path):
    """A library file that cannot be read while the zip is written: one line naming it, and
    neither the zip nor its .part file is left."""
    from conftest import where_modes_bind, write_tone

    prefix = where_modes_bind()
    lib = tmp_path / "lib"
    for i, name in enumerate(("a.wav", "b.wav")):
        write_tone(lib / name, 300.0 + 100 * i, seconds=0.2)
    run("index", lib, "--jobs", "1", "-q", check_rc=0)
    atlas = lib / ".soundatlas"
    run("collections", "add", "k", "a.wav", "b.wav", "--atlas", atlas, check_rc=0)
    (lib / "b.wav").chmod(0o000)
    out = tmp_path / "k.zip"
    try:
        proc = subprocess.run([*prefix, str(BIN), "collections", "export", "k", "-o", str(out),
                               "--atlas", str(atlas)], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "CI": "1"})
    finally:
        (lib / "b.wav").chmod(0o644)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot write {out}: {lib / 'b.wav'}: Permission denied" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]


def test_threads_hold_for_the_whole_command_and_no_longer():
    """``--threads N`` is the thread count of everything the command does (adapt's embedding
    after its training too); a program that runs ``main`` keeps its own count afterwards."""
    import torch

    from soundatlas.cli.common import run_command

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        seen = []

        def command(args):  # what a command sees of torch's threads while it runs
            seen.append(torch.get_num_threads())
            return 0

        assert run_command(argparse.Namespace(func=command, command="x", threads=1)) == 0
        assert run_command(argparse.Namespace(func=command, command="x", threads=None)) == 0
        assert seen == [1, 3] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_json_output_has_no_nan_and_writes_numpy_numbers_as_numbers(capsys):
    """Python's json writes NaN, which other JSON readers refuse with the whole document: a
    figure that is not finite goes out as null, numpy's numbers as numbers."""
    import numpy as np

    from soundatlas.cli.common import print_json

    print_json({"a": float("nan"), "b": [float("inf"), np.float32("nan"), np.float64(2.5)],
                "c": (np.int64(3), -float("inf")), "d": Path("x")})
    text = capsys.readouterr().out
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}")) == {
        "a": None, "b": [None, None, 2.5], "c": [3, None], "d": "x"}


@pytest.mark.parametrize("args, words", [
    (("train", "--seed", str(2**64)), "--seed: 18446744073709551616 must be from 0 to"),
    (("adapt", "--seed", str(2**64)), "--seed: 18446744073709551616 must be from 0 to"),
    (("train", "--threads", "99999"), "--threads: 99999 must be from 1 to 1024"),
    (("train", "--dims", "99999999"), "--dims: 99999999 must be from 1 to 1024"),
    (("train", "--batch-size", "99999999999999"), "batch_size=99999999999999 must be at most"),
])
def test_numbers_past_what_can_run_are_usage_errors(args, words, tmp_path, capsys):
    """Each ended in a traceback (torch's seed overflow, numpy's or torch's MemoryError) or a
    segfault (99,999 threads)."""
    proc = run_in_process(capsys, args[0], "--atlas", tmp_path, "-n", "instrument", *args[1:])
    if args[0] == "adapt":
        proc = run_in_process(capsys, "adapt", "--atlas", tmp_path, *args[1:])
    assert proc.returncode == 2 and words in proc.stderr, proc


def test_an_empty_model_name_is_not_taken_for_the_default(tone_library, capsys):
    """An unset shell variable: `--init-from ""` fine-tuned from `default`, `embed -m ""`
    embedded with it and `--name ""` gave the default name; a bad --name is misuse."""
    from soundatlas.atlas import Atlas
    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)
    atlas = tone_library / ".soundatlas"
    for args, status, words in (
            (("train", "--atlas", atlas, "-n", "instrument", "--name", ""), 2,
             "argument --name: model name ''"),
            (("adapt", "--atlas", atlas, "--name", "../x"), 2, "argument --name: model name"),
            (("train", "--atlas", atlas, "-n", "instrument", "--init-from", "", "--iterations",
              "2"), 1, "model name '' is empty"),
            (("embed", "--atlas", atlas, "-m", ""), 1, "model name '' is empty")):
        proc = run_in_process(capsys, *args)
        assert proc.returncode == status and words in proc.stderr, (args, proc)
    with Atlas.open(atlas) as a:
        assert a.models() == []  # nothing trained, embedded or registered
    for command in ("train", "adapt"):  # --replace was ignored beside --resume
        proc = run_in_process(capsys, command, "--atlas", atlas, "-n", "input-knn", "--resume",
                              "--replace")
        assert proc.returncode == 2 and "give one of them" in proc.stderr, proc
    proc = run_in_process(capsys, "models", "--atlas", atlas.parent / "typo")  # not "none here"
    assert proc.returncode == 2 and f"no atlas at {atlas.parent / 'typo'}" in proc.stderr, proc
    # a run refused once its folder was made (a label of one value) leaves no folder behind
    with Atlas.open(atlas, write=True) as a:
        a.tag(a.sample_ids().tolist(), add=["mood:one"])
    proc = run_in_process(capsys, "train", "--atlas", atlas, "-n", "label:mood", "--name",
                          "v1", "--iterations", "2")
    assert proc.returncode == 1 and not (atlas / "models" / "v1").exists(), proc


def test_without_atlas_commands_open_soundatlas_atlas_else_the_current_folders(
        tone_library, tmp_path, capsys, monkeypatch):
    """Every command but index and map opens --atlas, else the folder $SOUNDATLAS_ATLAS names,
    else ./.soundatlas (README "Commands")."""
    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    monkeypatch.delenv("SOUNDATLAS_ATLAS", raising=False)
    missing = run_in_process(capsys, "info", "--json")
    assert missing.returncode == 1 and str(other / ".soundatlas") in missing.stderr
    monkeypatch.setenv("SOUNDATLAS_ATLAS", str(tone_library / ".soundatlas"))
    by_env = run_in_process(capsys, "info", "--json")
    assert by_env.returncode == 0 and json.loads(by_env.stdout)["n_samples"] == 18
    monkeypatch.delenv("SOUNDATLAS_ATLAS")
    monkeypatch.chdir(tone_library)
    here = run_in_process(capsys, "info", "--json")
    assert here.returncode == 0 and json.loads(here.stdout)["n_samples"] == 18
