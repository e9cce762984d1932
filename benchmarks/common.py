"""Helpers shared by the benchmark scripts: machine facts, timing, tables, JSON, test signals.

Benchmarks in this project compare against a named baseline *in the same run* and print the ratio,
report medians over at least three repeats, and print the machine they ran on (the machine is a
small shared VM whose speed varies from minute to minute, so absolute numbers drift; ratios much
less so).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS")


# --- machine facts ------------------------------------------------------------------------------

def machine_facts() -> dict:
    """Cores, CPU, memory, load, thread settings and library versions of this run."""
    import torch

    facts = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "os_cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gb": round(_meminfo_kb("MemTotal") / 2**20, 1),
        "loadavg": _loadavg(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", *THREAD_ENV)},
        "versions": _versions(),
        "git": _git_revision(),
    }
    return facts


def machine_facts_subprocess() -> dict:
    """:func:`machine_facts` computed in a short-lived subprocess, so that this process never
    imports torch (keeps a parent that launches measured subprocesses small)."""
    code = "import json, common; print(json.dumps(common.machine_facts()))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_facts(facts: dict) -> None:
    v = facts["versions"]
    env = ", ".join(f"{k}={val}" for k, val in facts["env"].items() if val is not None) or "none set"
    print(f"# {facts['date']} on {facts['host']} ({facts['platform']})")
    print(f"# cpu: {facts['cpu']}; cores: {facts['cores_usable']} usable of {facts['os_cpu_count']}; "
          f"mem {facts['mem_total_gb']} GB; load average {facts['loadavg']}")
    print(f"# torch threads {facts['torch_threads']} (interop {facts['torch_interop_threads']}); "
          f"env: {env}")
    print("# " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print(f"# git {facts['git']}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kb(key: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("soundatlas", "torch", "numpy", "scipy", "librosa", "soxr", "soundfile", "numba"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception:  # an absent optional library is a fact, not an error
            out[name] = None
    try:
        import soundfile

        out["libsndfile"] = soundfile.__libsndfile_version__
    except Exception:
        pass
    try:
        import numpy

        cfg = numpy.show_config(mode="dicts")
        out["numpy_blas"] = cfg["Build Dependencies"]["blas"].get("name")
    except Exception:
        pass
    return out


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{rev}{' (+ uncommitted changes)' if dirty else ''}" if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- timing -------------------------------------------------------------------------------------

def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds one call of ``fn`` took, and what it returned."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else float("nan")


@contextmanager
def environ(**values):
    """Temporarily set (str) or unset (None) environment variables."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def baseline_src(work: Path, ref: str) -> tuple[Path, str]:
    """``ref``'s ``src`` exported under ``work`` (once per commit); (its folder, the commit)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref],
                         capture_output=True, text=True, check=True).stdout.strip()
    out = work / f"baseline-{sha}"
    if not (out / "extracted").is_file():  # written last: an extraction cut short starts over
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "src"],
                                 capture_output=True, check=True).stdout
        with tempfile.TemporaryFile() as f:
            f.write(archive)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                tar.extractall(out, filter="data")
        (out / "extracted").write_text(sha + "\n")
    return out / "src", sha


def ours_and_baseline(work: Path, ref: str) -> tuple[dict, dict[str, Path], str]:
    """The start of a run against an earlier commit: the machine's facts (printed), the two
    ``src`` folders, this checkout's as 'ours' and ``ref``'s exported under ``work`` as
    'baseline', and that commit."""
    facts = machine_facts()
    print_facts(facts)
    work.mkdir(parents=True, exist_ok=True)
    baseline, sha = baseline_src(work, ref)
    return facts, {"ours": REPO / "src", "baseline": baseline}, sha


def built_atlas(path: Path, key: str, tag: str) -> bool:
    """Whether ``path`` holds a synthetic atlas a benchmark finished building as ``tag``: its
    meta ``key`` is written last, so an atlas whose build was cut short is not one."""
    from soundatlas.atlas import DB_NAME, Atlas
    from soundatlas.errors import AtlasError

    if not (path / DB_NAME).is_file():
        return False
    try:
        with Atlas.open(path) as atlas:
            return atlas.meta(key) == tag
    except AtlasError:
        return False


def drop_caches() -> bool:
    """Empty the page cache (root only); whether it was."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def add_cold_option(ap) -> None:
    """``--cold``: the page cache emptied before each server starts (``servers_alternated``)."""
    ap.add_argument("--cold", action="store_true", help="empty the page cache before each "
                    "server starts (root only)")


def check_cold(ap, args) -> None:
    """Stop with a usage error when ``--cold`` was asked and the page cache cannot be emptied."""
    if args.cold and not drop_caches():
        ap.error("--cold empties the page cache, which takes root (writing "
                 "/proc/sys/vm/drop_caches was refused)")


def servers_alternated(servers: dict[str, Path], repeats: int, run: Callable[[Path, int], dict],
                       *, cold: bool = False,
                       show: Callable[[str, int, dict], None] | None = None
                       ) -> dict[str, list[dict]]:
    """``run(src, repeat)`` for each server's ``src`` in turn, ``repeats`` rounds (the page cache
    emptied before each with ``cold``); every result by server name, ``show``n as it comes."""
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    for r in range(repeats):
        for name, src in servers.items():
            if cold:
                drop_caches()
            res = run(src, r)
            runs[name].append(res)
            if show is not None:
                show(name, r, res)
    return runs


def ours_against_baseline(runs: dict[str, list[dict]], figures, unit: str = "") -> dict:
    """Print each figure's median for ``ours`` and ``baseline`` and their ratio; return the
    medians by server name (``figures``: (key, label) pairs)."""
    medians = {name: {key: median(x[key] for x in rs) for key, _ in figures}
               for name, rs in runs.items()}
    for key, label in figures:
        o, b = medians["ours"][key], medians["baseline"][key]
        print(f"  {label:18s} ours {o:9.2f}{unit}  baseline {b:9.2f}{unit}  "
              f"ours/baseline {o / b:5.2f}")
    return medians


@contextmanager
def no_gc():
    """This process's garbage collector off (what is alive frozen out of its sight), on again
    after. For concurrent benchmark clients: a collection stops all of them at once, and the
    pause would count as the latency of the server they measure."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


class OtherLoad:
    """How many cores *other* processes (and the hypervisor) kept busy while we ran.

    ``with OtherLoad(pids) as load: ...`` then ``load.cores``: (busy jiffies of the whole machine
    - jiffies of ``pids``, threads and reaped children included) / elapsed time. On a shared
    machine this says which repeats were disturbed. ``pids``: this process by default; pass a
    callable for a set that changes (a process tree).
    """

    def __init__(self, pids=None):
        self._pids = pids if callable(pids) else (lambda: list(pids or [os.getpid()]))
        self.cores = float("nan")

    def __enter__(self):
        self._t0, self._busy0, self._ours0 = time.perf_counter(), machine_busy(), self._ours()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t0
        other = (machine_busy() - self._busy0) - (self._ours() - self._ours0)
        self.cores = max(0.0, other / CLK_TCK / wall) if wall > 0 else float("nan")

    def _ours(self) -> int:
        return sum(process_jiffies(pid) for pid in self._pids())


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy() -> int:
    """Busy jiffies of all CPUs since boot: user, nice, system, irq, softirq and steal."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return user + nice + system + irq + softirq + steal
    except (OSError, ValueError):
        return 0


def process_jiffies(pid: int, *, children: bool = True) -> int:
    """CPU jiffies of ``pid`` (utime + stime, plus its reaped children's when ``children``)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        t = int(rest[11]) + int(rest[12])
        return t + (int(rest[13]) + int(rest[14]) if children else 0)
    except (OSError, ValueError, IndexError):
        return 0


# --- output -------------------------------------------------------------------------------------

def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as an aligned table; ``columns``: (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        line = []
        for key, _, spec in columns:
            val = row.get(key)
            line.append("-" if val is None else (format(val, spec) if spec else str(val)))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        print("  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(line, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def goal_line(name: str, value: float, goal: float, unit: str = "x") -> str:
    ok = value >= goal
    return f"{name}: {value:.2f}{unit} (goal >= {goal:g}{unit}: {'met' if ok else 'MISSED'})"


def medians_and_ratio(runs: dict[str, list[float]], *, scale: float = 1.0,
                      unit: str = "s") -> tuple[dict[str, float], float]:
    """Print the median of each side's rounds (``runs``: 'baseline' and 'ours', in seconds;
    shown times ``scale`` in ``unit``) with the rounds themselves, then the ratio baseline /
    ours; return the medians and the ratio."""
    med = {name: median(xs) for name, xs in runs.items()}
    for name in ("baseline", "ours"):
        shown = ", ".join(f"{x * scale:.3f}" for x in runs[name])
        print(f"  {name:8s} median {med[name] * scale:8.3f} {unit} ({shown})")
    ratio = med["baseline"] / med["ours"]
    print(f"  ratio baseline / ours: {ratio:.1f}x")
    return med, ratio


def write_json(path: str | os.PathLike | None, payload: dict) -> None:
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    print(f"# results written to {path}")


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --- test signals -------------------------------------------------------------------------------

KINDS = ("noise", "sines", "decay")


def make_clip(seed: int, index: int, *, sr: int = 16000, duration: float = 2.5) -> np.ndarray:
    """One synthetic clip, the same for the same (seed, index) in any process.

    ``index % 3`` picks the kind: white noise, a random sum of sinusoids, or a decaying harmonic
    tone with a random onset. Float32, peak well below 1.
    """
    rng = np.random.default_rng([seed, index])
    n = int(round(sr * duration))
    t = np.arange(n) / sr
    kind = KINDS[index % 3]
    nyq_safe = min(7000.0, 0.45 * sr)
    if kind == "noise":
        y = rng.standard_normal(n) * rng.uniform(0.02, 0.3)
    elif kind == "sines":
        n_sines = int(rng.integers(1, 13))
        freqs = np.exp(rng.uniform(np.log(27.5), np.log(nyq_safe), n_sines))
        amps = rng.uniform(0.05, 1.0, n_sines)
        phases = rng.uniform(0, 2 * np.pi, n_sines)
        y = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
        y *= rng.uniform(0.1, 0.8) / max(1e-9, np.abs(y).max())
    else:
        f0 = float(np.exp(rng.uniform(np.log(30.0), np.log(2000.0))))
        n_harm = max(1, min(int(rng.integers(1, 16)), int(nyq_safe // f0)))
        k = np.arange(1, n_harm + 1)
        amps = rng.uniform(0.2, 1.0, n_harm) / k
        onset = rng.uniform(0.0, 0.5)
        tau = rng.uniform(0.08, 1.5)
        tt = np.clip(t - onset, 0.0, None)
        env = np.where(t >= onset, np.exp(-tt / tau), 0.0)
        y = env * (amps[:, None] * np.sin(2 * np.pi * f0 * k[:, None] * tt)).sum(0)
        y *= rng.uniform(0.1, 0.8) / max(1e-9, np.abs(y).max())
        y += rng.standard_normal(n) * 1e-4  # a little room noise
    return y.astype(np.float32)


def make_clips(seed: int, indices, *, sr: int = 16000, duration: float = 2.5) -> list[np.ndarray]:
    return [make_clip(seed, int(i), sr=sr, duration=duration) for i in indices]


def python_cmd() -> list[str]:
    """The interpreter running this script (the project's venv when run as documented)."""
    return [sys.executable]
