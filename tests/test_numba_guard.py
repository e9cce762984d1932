"""numba_guard: a gufunc cache whose two files come from two processes (numba issue #10128)
crashes every process that loads it; clear_cache and check repair it.

The broken cache is made the way two racing workers make it, one process after the other: a
first process compiles two cached gufuncs; one gufunc's kernel files are then removed, so the
next process compiles that kernel alone, names it after a different place in its compile order,
and pairs it with the first process's wrapper."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from soundatlas import numba_guard

GUFS = textwrap.dedent('''
    import numba

    @numba.guvectorize(["void(float64[:], float64[:])"], "(n)->(n)", nopython=True, cache=True)
    def plus_one(x, out):
        for i in range(x.shape[0]):
            out[i] = x[i] + 1.0

    @numba.guvectorize(["void(float64[:], float64[:])"], "(n)->(n)", nopython=True, cache=True)
    def twice(x, out):
        for i in range(x.shape[0]):
            out[i] = 2.0 * x[i]
''')
PROBE = textwrap.dedent('''
    import json
    import numpy as np
    from soundatlas.numba_guard import cache_dirs

    print(json.dumps(cache_dirs(["gufpkg.gufs"])), flush=True)
    from gufpkg import gufs
    print(gufs.twice(np.arange(3.0)).tolist())
''')


@pytest.fixture
def gufpkg(tmp_path, monkeypatch):
    """A package of two cached gufuncs on the path of this process and its children."""
    pkg = tmp_path / "gufpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "gufs.py").write_text(GUFS)
    (pkg / "probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == "gufpkg"]:
        monkeypatch.delitem(sys.modules, name)  # find_spec imported another test's package
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    yield pkg
    for name in [m for m in sys.modules if m.split(".")[0] == "gufpkg"]:
        del sys.modules[name]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)


def _break_cache(gufpkg) -> dict[str, str]:
    assert _run("import gufpkg.gufs").returncode == 0  # compiles and caches both
    dirs = numba_guard.cache_dirs(["gufpkg.gufs"])
    assert list(dirs) == [str(gufpkg / "gufs.py")]
    folder = next(iter(dirs.values()))
    kernels = [f for f in os.listdir(folder) if f.startswith("gufs.twice")]
    assert kernels and any(f.startswith("guf-gufs.twice") for f in os.listdir(folder))
    for f in kernels:
        os.remove(os.path.join(folder, f))
    assert _run("import gufpkg.gufs").returncode == 0  # compiles twice's kernel alone
    return dirs


def test_a_mixed_gufunc_cache_crashes_and_clear_cache_repairs_it(gufpkg):
    dirs = _break_cache(gufpkg)
    call = "import numpy as np; from gufpkg import gufs; print(gufs.twice(np.arange(3.0)).tolist())"
    broken = _run(call)
    assert broken.returncode < 0, broken  # killed by a signal: the crash the guard is for

    removed = numba_guard.clear_cache(dirs)
    assert removed >= 4  # both gufuncs' kernel and wrapper files, index and data
    folder = next(iter(dirs.values()))
    assert not [f for f in os.listdir(folder) if f.endswith((".nbi", ".nbc"))]
    fixed = _run(call)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "[0.0, 2.0, 4.0]"


def test_clear_cache_leaves_other_modules_files(tmp_path):
    (tmp_path / "gufs.twice-8.py311.nbi").write_text("")
    (tmp_path / "guf-gufs.twice-8.py311.1.nbc").write_text("")
    (tmp_path / "other.twice-8.py311.nbi").write_text("")
    (tmp_path / "gufs.cpython-311.pyc").write_text("")
    assert numba_guard.clear_cache({str(tmp_path / "gufs.py"): str(tmp_path)}) == 2
    assert sorted(os.listdir(tmp_path)) == ["gufs.cpython-311.pyc", "other.twice-8.py311.nbi"]


def test_check_repairs_a_broken_cache_and_then_finds_nothing(gufpkg):
    _break_cache(gufpkg)
    line = numba_guard.check(probe="gufpkg.probe")
    assert line is not None and "numba cache was broken" in line and "signal 11" in line
    assert numba_guard.check(probe="gufpkg.probe") is None  # healthy now: nothing to say


def test_check_leaves_a_python_error_alone(gufpkg):
    (gufpkg / "probe.py").write_text("raise RuntimeError('not a cache problem')\n")
    assert numba_guard.check(probe="gufpkg.probe") is None


def test_librosa_compiled_modules_are_where_numba_caches_them():
    dirs = numba_guard.cache_dirs()
    assert any(src.endswith(os.path.join("librosa", "beat.py")) for src in dirs)
    assert all(os.path.isdir(folder) for folder in dirs.values())
    json.dumps(dirs)  # what the probe prints


def test_import_librosa_loads_the_compiled_modules_once():
    librosa = numba_guard.import_librosa()
    assert all(name in sys.modules for name in numba_guard.COMPILED_MODULES)
    assert numba_guard.import_librosa() is librosa
    assert np.isfinite(librosa.beat.beat_track(y=np.zeros(16000, np.float32), sr=16000)[0]).all()


def test_the_default_probe_says_its_cache_folders_and_analyses_a_loop():
    probe = subprocess.run([sys.executable, "-m", "soundatlas.rhythm"], capture_output=True,
                           text=True, timeout=900, check=False)
    assert probe.returncode == 0, probe.stderr
    dirs = json.loads(probe.stdout.splitlines()[0])
    assert dirs == numba_guard.cache_dirs()
