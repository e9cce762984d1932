"""librosa's numba caches: built by one process at a time, checked and cleared after a crash.

librosa compiles its beat tracker's gufuncs (numba ``guvectorize(cache=True)``) when
``librosa.beat`` is first imported, and caches them on disk. numba writes a gufunc's two cache
files (the kernel and its ``guf-`` wrapper) separately, and names the kernel after the order in
which its process compiled things; two processes compiling at once can leave a pair that does
not match (numba issue #10128, still open in numba 0.68). Every process that loads such a pair
dies with a segmentation fault the first time it tracks beats, and the cache stays that way.
``index`` starts its workers together on a library's first loops, so this used to turn every
loop of 4 s or more into a worker crash ("failed"), for good.

Two defences:

- :func:`import_librosa` imports librosa's compiled modules under a lock file that every
  soundatlas process on the machine shares, so one process at a time compiles and caches them;
- :func:`check` runs the loop analysis (``python -m soundatlas.rhythm``) in a process of its
  own; when that process dies of a signal, it removes those modules' numba cache files (numba
  builds them again) and tries once more. ``index`` calls it after a run's first worker crash,
  before it looks for a file to blame.

The lock is per machine: Dask workers on several machines that share one installation of
librosa (an NFS home) are not serialised by it, and :func:`check` is what repairs that case.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["COMPILED_MODULES", "import_librosa", "cache_dirs", "clear_cache", "check"]

# librosa's modules with numba functions cached on disk; importing them compiles (or loads) the
# gufuncs, whose signatures are given, so the import is where the cache is written
COMPILED_MODULES = ("librosa.util.utils", "librosa.core.audio", "librosa.core.pitch",
                    "librosa.beat", "librosa.onset", "librosa.effects", "librosa.feature")
LOCK_NAME = "soundatlas-librosa-numba.lock"
_imported = False


def import_librosa():
    """``librosa``, its numba-compiled modules imported under the machine-wide lock.

    Returns
    -------
    module
        ``librosa``.
    """
    global _imported
    import librosa

    if not _imported:
        try:
            from filelock import FileLock

            lock = FileLock(os.path.join(tempfile.gettempdir(), LOCK_NAME), mode=0o666)
            with lock:
                _import_compiled()
        except OSError:  # a lock file we may not write (another user's): go on without it
            _import_compiled()
        _imported = True
    return librosa


def _import_compiled() -> None:
    for name in COMPILED_MODULES:
        importlib.import_module(name)


def cache_dirs(modules=COMPILED_MODULES) -> dict[str, str]:
    """Where numba caches each of ``modules`` (``NUMBA_CACHE_DIR``, else the ``__pycache__``
    beside the source, else numba's user-wide folder), found as numba finds it.

    Parameters
    ----------
    modules : iterable of str
        Module names (found, not imported).

    Returns
    -------
    dict
        Source file -> cache folder; empty when numba's locators cannot be asked (its private
        API changed).
    """
    try:
        from numba.core.caching import CacheImpl

        locators = list(CacheImpl._locator_classes)
    except (ImportError, AttributeError):
        return {}
    out = {}
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            continue
        for cls in locators:
            try:
                locator = cls.from_function(cache_dirs, spec.origin)
            except Exception:  # noqa: BLE001 - a locator that cannot serve this file
                locator = None
            if locator is not None:
                out[spec.origin] = locator.get_cache_path()
                break
    return out


def clear_cache(dirs: dict[str, str]) -> int:
    """Remove the numba cache files (``*.nbi``, ``*.nbc``) of the given sources.

    Parameters
    ----------
    dirs : dict
        Source file -> cache folder, as :func:`cache_dirs` gives it.

    Returns
    -------
    int
        Files removed.
    """
    removed = 0
    for source, folder in dirs.items():
        stem = Path(source).stem
        prefixes = (f"{stem}.", f"guf-{stem}.")
        for path in Path(folder).glob("*.nb[ic]"):
            if path.name.startswith(prefixes):
                try:
                    path.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def check(timeout: float = 900.0, probe: str = "soundatlas.rhythm") -> str | None:
    """Analyse a synthetic loop in a process of its own; if that process dies of a signal, clear
    librosa's numba caches and try again.

    Parameters
    ----------
    timeout : float
        Seconds each try may take (a cold cache compiles for up to a minute on a busy machine).
    probe : str
        The module run as ``python -m PROBE``: it prints the JSON of :func:`cache_dirs` of what it
        uses on its first line, then runs the compiled code (default: ``soundatlas.rhythm``,
        whose probe is the loop analysis).

    Returns
    -------
    str or None
        A line for the user when the cache was broken (repaired, or not repairable); None when
        the analysis ran, or failed in a way a cache cannot cause.
    """
    first = _self_test(probe, timeout)
    if first is None or first.returncode >= 0:
        return None
    try:
        dirs = json.loads(first.stdout.splitlines()[0])
    except (IndexError, ValueError):  # it died before it could say
        dirs = cache_dirs()
    removed = clear_cache(dirs)
    second = _self_test(probe, timeout)
    where = ", ".join(sorted(set(dirs.values()))) or "numba's cache"
    if second is not None and second.returncode < 0:
        return (f"librosa's beat tracker crashes its process (signal {-second.returncode}) even "
                f"after its numba cache was cleared ({removed} files in {where}): loops are "
                "left without tempo and key")
    return (f"librosa's numba cache was broken (numba issue #10128: files of two processes "
            f"mixed; signal {-first.returncode}): {removed} files removed from {where} and "
            "built again")


def _self_test(probe: str, timeout: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([sys.executable, "-m", probe],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
