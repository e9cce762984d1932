"""A self-contained HTML report of an evaluation: tables and PNG figures in one folder.

``write_report`` scores the models beside the baselines (``soundatlas.evaluate.evaluate``) and
writes ``OUTPUT/index.html`` plus ``OUTPUT/fig/*.png``: 3-D views of each map from several
angles coloured by instrument and by pitch, per-class accuracy, confusion matrices, trajectories of
chosen notes (start, middle and end marked, so the attack-to-release path shows), and the analogy
results. The page loads nothing from the network and references only the files written beside it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from soundatlas import scoretable as st
from soundatlas.errors import ParameterError
from soundatlas.text import slug

__all__ = ["key_frames", "write_report"]

VIEWS = ((20, -60), (20, 30), (80, -90))  # (elevation, azimuth) of the 3-D views


def write_report(atlas, output, *, models=(), baselines=(), evaluation: dict | None = None,
                 n_trajectories: int = 6, seed: int = 0, progress=None, **evaluate_kw) -> Path:
    """Write the report for ``models`` into directory ``output``.

    Parameters
    ----------
    atlas : Atlas
        The atlas holding the models.
    output : str or Path
        The report's directory (made when missing): ``index.html``, ``evaluation.json`` and
        ``fig/*.png`` are written there.
    models : sequence of str
        Model names in ``atlas``: each gets a section with its figures.
    baselines : sequence of str
        Baselines scored beside the models (``soundatlas.baselines.BASELINES``).
    evaluation : dict, optional
        A result of ``soundatlas.evaluate.evaluate`` to reuse (computed here when None, with
        ``evaluate_kw``).
    n_trajectories : int
        Notes whose trajectories are drawn per model.
    seed : int
        Seed of the evaluation and of the choice of notes.
    progress : callable, optional
        ``progress(done, total, stage)``, called after each stage.
    **evaluate_kw
        Further arguments of ``evaluate`` (``labels``, ``n_per_file``, ``n_analogies``, ...).

    Returns
    -------
    Path
        The page, ``output/index.html``.

    Raises
    ------
    ParameterError
        When no model is named or ``output`` is a file.
    """
    import matplotlib

    matplotlib.use("Agg")
    from soundatlas.evaluate import Stages, evaluate, label_of

    if not models:
        raise ParameterError("a report needs at least one model")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--output {out} exists and is not a directory")
    fig_dir = out / "fig"
    registered = [atlas.model(name) for name in models]  # unknown names fail here, first
    step = Stages(1 + 4 * len(registered) + 1, progress)
    if evaluation is None:
        evaluation = evaluate(atlas, models, baselines=baselines, seed=seed, **evaluate_kw)
    step("evaluation")
    fig_dir.mkdir(parents=True, exist_ok=True)  # once there is something to draw
    known = set(atlas.label_summary())
    labels = {key: label_of(atlas, key, known, suggested=False)
              for key in evaluation["protocol"]["labels"][:2]}
    if "pitch" in known and "pitch" not in labels:  # trajectories are ordered by pitch
        labels["pitch"] = atlas.labels("pitch", suggested=False)
    sections = [_summary_table(evaluation)]
    stems = _stems(registered)
    for m in registered:
        name = m.name
        stem = stems[m.id]
        r = evaluation["results"].get(name, {})
        ids, pts = atlas.points(m.id)
        figs = [_map_views(pts, ids, labels, fig_dir / f"{stem}-map.png", name)]
        step(f"{name}: map")
        figs.append(_per_class(r, fig_dir / f"{stem}-per-class.png", name,
                               evaluation["protocol"].get("test_classes", {})))
        figs.append(_confusions(r, fig_dir / f"{stem}-confusion.png", name))
        step(f"{name}: accuracy")
        figs.append(_trajectories(atlas, m.id, ids, pts, labels, fig_dir / f"{stem}-traj.png",
                                  name, n=n_trajectories, seed=seed))
        step(f"{name}: trajectories")
        sections.append(_model_section(name, m, r, [f for f in figs if f], out, stem,
                                       dims=pts.shape[1] if pts.ndim == 2 else None))
        step(f"{name}: section")
    page = out / "index.html"
    page.write_text(_page(atlas, evaluation, sections), encoding="utf-8")
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2, default=str))
    step("page")
    return page


# -- figures ---------------------------------------------------------------------------------------


def _pitch_numbers(values) -> np.ndarray:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.array(out)


def _class_colours(values):
    import matplotlib.pyplot as plt

    classes = sorted({v for v in values if v is not None})
    cmap = plt.get_cmap("tab20")
    cmap2 = plt.get_cmap("tab20b")
    colours = {c: (cmap(i) if i < 20 else cmap2((i - 20) % 20)) for i, c in enumerate(classes)}
    return classes, colours


def _map_views(pts, ids, labels, path: Path, name: str) -> Path | None:
    """Three views of the map, one row per label: classes in colours, numbers on a colour scale."""
    import matplotlib.pyplot as plt

    keys = [k for k in labels if k != "pitch"][:1] + (["pitch"] if "pitch" in labels else [])
    if len(pts) == 0 or pts.shape[1] < 3 or not keys:
        return None
    fig = plt.figure(figsize=(4.2 * len(VIEWS), 4.2 * len(keys)))
    handles = []
    for row, key in enumerate(keys):
        values = [labels[key].get(int(i)) for i in ids]
        numbers = _pitch_numbers(values)
        numeric = not np.all(np.isnan(numbers)) and all(
            v is None or not np.isnan(x) for v, x in zip(values, numbers))
        if not numeric:
            classes, colours = _class_colours(values)
            c = [colours.get(v, (0.6, 0.6, 0.6, 1)) for v in values]
            if not handles:
                handles = [plt.Line2D([], [], marker="o", ls="", color=colours[k], label=k)
                           for k in classes]
        for col, (elev, azim) in enumerate(VIEWS):
            ax = fig.add_subplot(len(keys), len(VIEWS), row * len(VIEWS) + col + 1,
                                 projection="3d")
            if numeric:
                sc = ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=numbers, cmap="viridis", s=3,
                                linewidths=0)
            else:
                ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=c, s=3, linewidths=0)
            ax.view_init(elev=elev, azim=azim)
            ax.set_title(f"by {key}, elev {elev} azim {azim}", fontsize=9)
            ax.tick_params(labelsize=6)
        if numeric:
            fig.colorbar(sc, ax=fig.axes[row * len(VIEWS):], shrink=0.6, label=key)
    if handles:
        fig.legend(handles=handles[:48], loc="upper center", ncol=min(8, len(handles)),
                   fontsize=7, frameon=False)
    fig.suptitle(name, y=0.02, fontsize=10)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _per_class(result: dict, path: Path, name: str, chance: dict) -> Path | None:
    """Bars of each label's per-class test accuracy, one row per label, and chance: one over
    the number of classes the test frames have (``chance``: the protocol's ``test_classes``;
    the classes only predicted, which the bars include, are no test classes)."""

    def draw(ax, key, c):
        cls = c["labels"]
        acc = [c["per_class_accuracy"].get(k) for k in cls]
        ax.bar(range(len(cls)), [a if a is not None else 0 for a in acc], color="#4477aa")
        ax.set_xticks(range(len(cls)))
        ax.set_xticklabels(cls, rotation=90, fontsize=6 if len(cls) > 30 else 8)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"{key} accuracy")
        n = (chance.get(key) or {}).get("n_classes")
        if n:  # a class's accuracy by a uniform guess among the classes the test frames have
            ax.axhline(1 / n, color="k", lw=0.5, ls=":")

    return _per_label_figure(result, path, draw, column=True, size=(12, 2.8),
                             title=f"{name}: per-class test accuracy (dotted: chance, one over "
                             "the number of test classes)")


def _confusions(result: dict, path: Path, name: str) -> Path | None:
    """Each label's confusion matrix, rows normalised, side by side."""

    def draw(ax, key, c):
        m = np.array(c["matrix"], dtype=np.float64)
        rows = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        cls = c["labels"]
        step = max(1, len(cls) // 30)
        ax.set_xticks(range(0, len(cls), step))
        ax.set_xticklabels(cls[::step], rotation=90, fontsize=6)
        ax.set_yticks(range(0, len(cls), step))
        ax.set_yticklabels(cls[::step], fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{key} (rows normalised)", fontsize=9)

    return _per_label_figure(result, path, draw, column=False, size=(7, 6.5),
                             title=f"{name}: confusion matrices of the k-NN on test frames")


def _per_label_figure(result: dict, path: Path, draw, *, column: bool, size, title: str
                      ) -> Path | None:
    """One panel per scored label (``draw(ax, label, confusion)``), in a column or a row of
    panels of ``size`` inches each way (the column's width is ``size[0]`` in all); None when
    no label has a confusion matrix."""
    import matplotlib.pyplot as plt

    conf = result.get("confusion", {})
    if not conf:
        return None
    n = len(conf)
    grid, figsize = ((n, 1), (size[0], size[1] * n)) if column else \
        ((1, n), (size[0] * n, size[1]))
    fig, axes = plt.subplots(*grid, figsize=figsize, squeeze=False)
    for ax, (key, c) in zip(axes.ravel(), conf.items()):
        draw(ax, key, c)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def choose_notes(ids, labels, *, n: int = 6, seed: int = 0) -> list[int]:
    """Notes of different classes whose trajectories the report draws.

    Parameters
    ----------
    ids : sequence of int
        The sample ids to choose from.
    labels : dict
        label key -> {sample id: value}; the classes are the first label other than pitch.
    n : int
        At most this many notes (one per class, classes drawn with ``seed``).
    seed : int
        Seed of the choice of classes.

    Returns
    -------
    list of int
        Sample ids, each near the middle of its class's pitch range when there is a pitch
        label; empty without a label other than pitch.
    """
    rng = np.random.default_rng(seed)
    keys = [k for k in labels if k != "pitch"]
    if not keys:
        return []
    cls = labels[keys[0]]
    pitch = labels.get("pitch", {})
    by_class: dict[str, list[tuple[float, int]]] = {}
    for i in ids:
        i = int(i)
        if i in cls:
            p = _pitch_numbers([pitch.get(i)])[0]
            by_class.setdefault(cls[i], []).append((p, i))
    chosen = []
    names = sorted(by_class)
    for k in rng.permutation(len(names))[:n]:
        notes = sorted(by_class[names[k]], key=lambda t: (np.isnan(t[0]), t[0], t[1]))
        chosen.append(notes[len(notes) // 2][1])
    return chosen


def key_frames(span: tuple[int, int]) -> tuple[int, int, int]:
    """The frames a trajectory figure marks as start, middle and end: the first, middle and
    last frame of its sounding part ``span`` (first, last)."""
    first, last = span
    return first, (first + last) // 2, last


def _trajectories(atlas, model_id, ids, pts, labels, path: Path, name: str, *, n, seed):
    import matplotlib.pyplot as plt

    from soundatlas.frames import sample_sounding_span

    chosen = choose_notes(ids, labels, n=n, seed=seed)
    if not chosen or pts.shape[1] < 3:
        return None
    fig = plt.figure(figsize=(8, 7))
    ax = fig.add_subplot(1, 1, 1, projection="3d")
    ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c="#cccccc", s=1, linewidths=0, alpha=0.4)
    colours = plt.get_cmap("tab10")
    recs = {r.id: r for r in atlas.samples(chosen)}
    for j, sid in enumerate(chosen):
        t = atlas.trajectory(model_id, sid)
        if len(t) == 0:
            continue
        c = colours(j % 10)
        label = " ".join(str(labels[k].get(sid, "")) for k in labels)
        # the sounding part: the near-silence after a note has no pitch of its own
        span = sample_sounding_span(atlas, recs[sid], len(t))
        part = t[span[0] : span[1] + 1]
        ax.plot(part[:, 0], part[:, 1], part[:, 2], color=c, lw=1.2, label=label)
        for i, marker, size in zip(key_frames(span), "osX", (40, 40, 60)):
            ax.scatter(*t[i], color=c, marker=marker, s=size, edgecolors="k")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{name}: trajectories of single notes, their sounding part "
                 "(o start, ■ middle, X end)", fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# -- HTML ------------------------------------------------------------------------------------------

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 9px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.baseline td { color: #666; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _summary_table(ev: dict) -> str:
    labels = ev["protocol"]["labels"]
    first = next((st.value(r, "accuracy", k, "against", "model") for r in ev["results"].values()
                  for k in labels if st.value(r, "accuracy", k, "against")), None)
    columns = [st.Column(f"{k} acc.", st.accuracy(k)) for k in labels] \
        + [st.Column(f"{k} acc. 95 %", st.accuracy_range(k)) for k in labels] \
        + ([st.Column(f"{k} vs {first}", st.difference(k)) for k in labels] if first else []) \
        + [st.Column(f"{k} P@10", st.precision(k)) for k in labels] \
        + [st.Column(f"{k} P@10 sim", st.precision_similarity(k)) for k in labels] \
        + [st.Column(f"{k} MAP@R", st.map_at_r(k)) for k in labels] \
        + [st.Column("trust. k=10", st.trustworthiness()),
           st.Column("cont. k=10", st.continuity()),
           st.Column("analogy instr.", st.analogy_win("instrument")),
           st.Column("analogy pitch", st.analogy_win("pitch"))]
    p = ev["protocol"]
    return (
        "<h2>Scores</h2>" + st.html_table(ev["results"], columns) +
        f"<p>k-NN accuracy on {p['n_frames']['test']:,} test frames ({p['frames_per_file']} "
        f"energy-weighted frames per file, k chosen on validation from {p['ks']}; 95 %: "
        "the interval of a bootstrap that resamples the test files"
        + (f"; vs {html.escape(first)}: the accuracy minus {html.escape(first)}'s on the same "
           "frames, and its 95 % interval" if first else "")
        + "); retrieval per sample (test samples query all others but their copies, or "
        "cross-bank the reference's samples alone; P@10 sim: "
        "in the model's similarity space, which the page's nearest sounds search, and for the "
        "input baseline the input pooled alike); trustworthiness and continuity of the test "
        "frames' map against their input windows; analogies a1 − a0 + b0 over test samples "
        "(win rate of the expected class among the 10 nearest).</p>" + _notes(ev)
        + _not_scored(ev))


def _notes(ev: dict) -> str:
    """What a reader must know beside the scores (``scoretable.score_notes``): the classes the
    k-NN cannot name, each label's chance, a label of one class, the cross-bank reference."""
    lines = st.score_notes(ev)
    if not lines:
        return ""
    return ("<p>Read with the scores:</p><ul>" +
            "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")


def _not_scored(ev: dict) -> str:
    """The figures the table shows as dashes because they could not be scored, and why."""
    lines = st.score_errors(ev["results"])
    if not lines:
        return ""
    return ("<p>Not scored:</p><ul>" +
            "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")


def _stems(models) -> dict[int, str]:
    """Each model's figure file names and anchor, by model id: its name made safe, and its id
    where that changed the name ('a b' and 'a_b' would share a slug, and one's figures
    overwrite the other's), and again where two still meet (a model named 'a_b-14' beside
    model 14, 'a b')."""
    stems = {m.id: (slug(m.name) if slug(m.name) == m.name else f"{slug(m.name)}-{m.id}")
             for m in models}
    while len(set(stems.values())) < len(stems):
        seen: set[str] = set()
        for m in sorted(models, key=lambda m: m.id):
            if stems[m.id] in seen:
                stems[m.id] = f"{stems[m.id]}-{m.id}"
            seen.add(stems[m.id])
    return stems


def _model_section(name, m, r, figs, out: Path, stem: str, dims: int | None = None) -> str:
    cfg = m.config
    nb = cfg.get("neighbourhood", {}).get("name", "?")
    training = cfg.get("training", {})
    parts = [f"<h2 id='{stem}'>{html.escape(name)}</h2>",
             f"<p>neighbourhood <code>{html.escape(str(nb))}</code>, preset "
             f"<code>{html.escape(str(cfg.get('preset')))}</code>, seed {cfg.get('seed')}, "
             f"{training.get('iterations', '?')} iterations, "
             f"{training.get('cpu_seconds', '?')} CPU s.</p>"]
    a = r.get("analogies")
    if a and "error" not in a:

        parts.append("<h3>Analogies</h3><table><tr><th>expected</th><th>win rate</th>"
                     "<th>share of 10 nearest</th><th>control (b0 alone) win rate</th>"
                     "<th>control share</th></tr>")
        for key in ("instrument", "pitch"):
            v = a.get(key, {})
            parts.append(f"<tr><td>{key}</td><td>{st.number(v.get('win_rate'))}</td>"
                         f"<td>{st.number(v.get('mean_share'))}</td>"
                         f"<td>{st.number(v.get('control_win_rate'))}</td>"
                         f"<td>{st.number(v.get('control_mean_share'))}</td></tr>")
        parts.append(f"</table><p>{a.get('n_triples')} random test triples (a0, a1: one "
                     "instrument at two pitches; b0: another instrument at a0's pitch); the "
                     "expected answer has b0's instrument and a1's pitch.</p>")
    if dims is not None and dims < 3:  # the views and trajectories are drawn in 3-D
        parts.append(f"<p>No map views or trajectories: {html.escape(name)} maps to {dims} "
                     f"dimension{'s' * (dims != 1)}, and they are drawn in 3.</p>")
    for f in figs:
        rel = f.relative_to(out).as_posix()
        parts.append(f"<img src='{html.escape(rel)}' alt='{html.escape(f.stem)}'>")
    return "\n".join(parts)


def _page(atlas, ev, sections) -> str:
    import datetime

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>soundatlas report</title><style>{CSS}</style></head><body>"
        f"<h1>soundatlas report</h1><p>Atlas <code>{html.escape(str(atlas.path))}</code>, "
        f"{ev['protocol']['n_samples']:,} samples, split seed {ev['protocol']['split_seed']}; "
        f"made {when}. The full numbers are in <a href='evaluation.json'>evaluation.json</a>.</p>"
        + "\n".join(sections) + "</body></html>")
