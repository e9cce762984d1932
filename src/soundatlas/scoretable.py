"""Score tables of an evaluation: one table model, written as text, HTML or Markdown.

A table is a list of :class:`Column` (a head and how to read one cell from a result of
``soundatlas.evaluate.evaluate``) over the evaluation's results, one row per map; a result that
failed is one row with its error. The same columns give :func:`text_table` (``soundatlas
evaluate``'s table, :func:`format_scores`), :func:`html_table` (the report's) and
:func:`markdown_table` (``tools/results_table.py``, for docs/RESULTS.md).

Cells read their numbers with :func:`value` (accuracy, retrieval, manifold and analogy figures
by their path in the result) and write them with three decimals; a missing number is a dash.
A figure that could not be scored (an ``{"error": why}`` entry in a result, as on an atlas too
small for it) is a dash too, and :func:`score_errors` says why beneath the table.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Callable

__all__ = ["Column", "number", "value", "metric", "accuracy", "accuracy_range", "difference",
           "precision", "precision_similarity",
           "map_at_r", "trustworthiness", "continuity", "analogy_win", "analogy_pair",
           "score_rows", "score_errors", "text_table", "html_table", "markdown_table",
           "format_scores", "score_notes"]

#: A cell: (row name, result, number formatter) -> the cell's text.
Cell = Callable[[str, dict, Callable[[object], str]], str]


@dataclass(frozen=True)
class Column:
    """One column of a score table.

    Parameters
    ----------
    head : str
        The column's heading.
    cell : callable
        ``cell(name, result, fmt) -> str``: the cell of the row ``name`` (a model, or
        ``baseline:NAME``) whose result is ``result``; ``fmt`` writes a number (None: a dash).
    align : {'right', 'left'}
        Alignment in the text and Markdown tables.
    """

    head: str
    cell: Cell
    align: str = "right"


def value(result: dict, *path):
    """The entry of ``result`` at ``path`` (keys in turn), or None where there is none.

    An integer key also finds its text form, so a result read back from JSON (where
    ``{10: ...}`` became ``{"10": ...}``) reads the same.
    """
    v = result
    for key in path:
        if not isinstance(v, dict):
            return None
        found = v.get(key)
        if found is None and isinstance(key, int):
            found = v.get(str(key))
        v = found
    return v


def metric(*path) -> Cell:
    """A cell showing the number at ``path`` of the result (see :func:`value`)."""
    return lambda name, result, fmt: fmt(value(result, *path))


def accuracy(label: str) -> Cell:
    """k-NN test accuracy of ``label``."""
    return metric("accuracy", label, "test_accuracy")


def accuracy_range(label: str) -> Cell:
    """The 95 % interval of ``label``'s test accuracy over test files, as ``low-high``."""
    def cell(name, result, fmt):
        v = value(result, "accuracy", label, "test_interval")
        return f"{fmt(v[0])}-{fmt(v[1])}" if v else fmt(None)

    return cell


def difference(label: str) -> Cell:
    """``label``'s accuracy minus the first model's on the same test frames, with the 95 %
    interval of that difference: ``+0.007 (-0.010, +0.024)``; a dash for the first model."""
    def cell(name, result, fmt):
        v = value(result, "accuracy", label, "against")
        if not v:
            return fmt(None)
        low_high = v.get("interval")
        spread = f" ({low_high[0]:+.3f}, {low_high[1]:+.3f})" if low_high else ""
        return f"{v['difference']:+.3f}{spread}"

    return cell


def precision(label: str) -> Cell:
    """Precision at 10 of ``label`` on the map."""
    return metric("retrieval", label, "precision_at_k")


def precision_similarity(label: str) -> Cell:
    """Precision at 10 of ``label`` in the model's similarity space."""
    return metric("retrieval_similarity", label, "precision_at_k")


def map_at_r(label: str) -> Cell:
    """MAP@R of ``label`` on the map."""
    return metric("retrieval", label, "map_at_r")


def trustworthiness(k: int = 10) -> Cell:
    """Trustworthiness of the test frames' map at ``k``."""
    return metric("manifold", "trustworthiness", k)


def continuity(k: int = 10) -> Cell:
    """Continuity of the test frames' map at ``k``."""
    return metric("manifold", "continuity", k)


def analogy_win(key: str, *, control: bool = False) -> Cell:
    """Analogy win rate for ``key`` (``instrument`` or ``pitch``); with ``control``, the
    control's beside it in brackets, or a dash without analogies for ``key``."""
    if not control:
        return metric("analogies", key, "win_rate")

    def cell(name, result, fmt):
        v = value(result, "analogies", key)
        return f"{fmt(v['win_rate'])} ({fmt(v['control_win_rate'])})" if v else fmt(None)

    return cell


def analogy_pair(name: str, result: dict, fmt) -> str:
    """Cell: the instrument and pitch analogy win rates as ``I/P`` (a dash without analogies)."""
    a = result.get("analogies", {})
    if "instrument" not in a:
        return fmt(None)
    return f"{fmt(value(a, 'instrument', 'win_rate'))}/{fmt(value(a, 'pitch', 'win_rate'))}"


def number(v, missing: str = "–") -> str:
    """``v`` with three decimals, or ``missing`` when it is None."""
    return missing if v is None else f"{v:.3f}"


def _number(missing: str) -> Callable[[object], str]:
    return lambda v: number(v, missing)


def score_rows(results: dict, columns: list[Column], *, missing: str = "–"
               ) -> list[tuple[str, list[str] | None, str | None]]:
    """The table's rows: ``(name, cells, None)``, or ``(name, None, error)`` for a result that
    failed.

    Parameters
    ----------
    results : dict
        name -> result, as ``evaluate(...)["results"]``.
    columns : list of Column
        The columns after the name.
    missing : str
        What a missing number shows.
    """
    fmt = _number(missing)
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append((name, None, r["error"]))
        else:
            rows.append((name, [c.cell(name, r, fmt) for c in columns], None))
    return rows


#: The parts of a result that hold an ``{"error": why}`` entry, in place of their numbers or
#: per label, where they cannot be scored; and how a note names them.
SCORED_PARTS = {"accuracy": "k-NN accuracy", "retrieval": "retrieval",
                "retrieval_similarity": "retrieval in the similarity space",
                "manifold": "trustworthiness and continuity", "analogies": "analogies"}


def score_errors(results: dict) -> list[str]:
    """Why figures of the results are missing: one line per part (and label) that could not be
    scored, naming the maps it concerns and the reason; a failed result (one whole-row error,
    which the table shows) is not repeated.

    Parameters
    ----------
    results : dict
        name -> result, as ``evaluate(...)["results"]``.

    Returns
    -------
    list of str
        Lines such as ``retrieval of 'pitch' (default, baseline:pca): k=10 must be ...``, in the
        order first met.
    """
    found: dict[tuple[str, str], list[str]] = {}
    for name, r in results.items():
        if "error" in r:
            continue
        for part, words in SCORED_PARTS.items():
            entry = r.get(part)
            if not isinstance(entry, dict):
                continue
            if "error" in entry:
                found.setdefault((words, str(entry["error"])), []).append(name)
                continue
            for label, v in entry.items():
                if isinstance(v, dict) and "error" in v:
                    found.setdefault((f"{words} of {label!r}", str(v["error"])),
                                     []).append(name)
        skipped = (r.get("manifold") or {}).get("skipped_ks")
        if skipped:  # scored, but not at every k: too few test frames for the larger ones
            n = r["manifold"].get("n_points")
            found.setdefault((f"trustworthiness and continuity at k = "
                              f"{', '.join(map(str, skipped))}",
                              f"{n} test frames: a k must be below half of them"),
                             []).append(name)
    return [f"{what} ({', '.join(names)}): {why}"
            for (what, why), names in found.items()]


def text_table(results: dict, columns: list[Column], *, first: str = "map",
               min_width: int = 11) -> list[str]:
    """The table as aligned plain-text lines (a failed result shows ``error: ...``).

    Parameters
    ----------
    results : dict
        name -> result.
    columns : list of Column
        The columns after the name column, headed ``first``.
    first : str
        The name column's heading.
    min_width : int
        The narrowest a number column is.

    Returns
    -------
    list of str
        The heading line, then one line per result.
    """
    rows = [(name, cells if cells is not None else [f"error: {err}"])
            for name, cells, err in score_rows(results, columns, missing="-")]
    width = max(len(n) for n in [first] + [name for name, _ in rows])
    widths = [max(min_width, len(c.head)) for c in columns]

    def line(name, cells, heads=False):
        out = [name.ljust(width)]
        for text, w, c in zip(cells, widths, columns):
            out.append(text.ljust(w) if c.align == "left" and not heads else text.rjust(w))
        return "  ".join(out)

    return [line(first, [c.head for c in columns], heads=True)] + \
        [line(name, cells) for name, cells in rows]


def html_table(results: dict, columns: list[Column], *, first: str = "map") -> str:
    """The table as one HTML ``<table>``; baseline rows have class ``baseline``, a failed
    result's error spans the row."""
    rows = []
    for name, cells, err in score_rows(results, columns):
        cls = ' class="baseline"' if name.startswith("baseline:") else ""
        if cells is None:
            rows.append(f"<tr{cls}><td>{html.escape(name)}</td>"
                        f"<td colspan={len(columns)}>{html.escape(err)}</td></tr>")
            continue
        rows.append(f"<tr{cls}><td>{html.escape(name)}</td>" +
                    "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    heads = [first] + [c.head for c in columns]
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>" +
            "".join(rows) + "</table>")


def markdown_table(results: dict, columns: list[Column], *, first: str = "map") -> list[str]:
    """The table as Markdown lines (a failed result shows ``error: ...`` in its first cell)."""
    lines = ["| " + " | ".join([first] + [c.head for c in columns]) + " |",
             "|---|" + "".join("---|" if c.align == "left" else "---:|" for c in columns)]
    for name, cells, err in score_rows(results, columns):
        if cells is None:
            cells = [f"error: {err}"] + [""] * (len(columns) - 1)
        lines.append("|" + "|".join(f" {c} " if c else " " for c in [name] + cells) + "|")
    return lines


def format_scores(result: dict) -> str:
    """The plain-text table ``soundatlas evaluate`` prints: the headline numbers of each map.

    Parameters
    ----------
    result : dict
        What ``soundatlas.evaluate.evaluate`` returns.

    Returns
    -------
    str
        The table, a note on the protocol (and on the reference, for cross-bank scoring), then
        a line for each figure that could not be scored (:func:`score_errors`).
    """
    labels = result["protocol"]["labels"]
    first = next((value(r, "accuracy", k, "against", "model") for r in result["results"].values()
                  for k in labels if value(r, "accuracy", k, "against")), None)
    columns = [Column(f"{k} acc", accuracy(k)) for k in labels] \
        + [Column(f"{k} 95%", accuracy_range(k)) for k in labels] \
        + ([Column(f"{k} vs {first}", difference(k)) for k in labels] if first else []) \
        + [Column(f"{k} P@10", precision(k)) for k in labels] \
        + [Column(f"{k} P@10 sim", precision_similarity(k)) for k in labels] \
        + [Column(f"{k} MAP@R", map_at_r(k)) for k in labels] \
        + [Column("trust@10", trustworthiness()), Column("cont@10", continuity()),
           Column("analogy i/p", analogy_pair)]
    lines = text_table(result["results"], columns)
    p = result["protocol"]
    lines.append(f"({p['n_frames']['test']} test frames of {p['n_samples']} samples, "
                 f"{p['frames_per_file']} per file; 95%: where the accuracy could be with other "
                 "test files (a bootstrap over them)"
                 + (f"; vs {first}: the accuracy minus {first}'s on the same frames, and its "
                    "95 % interval" if first else "")
                 + "; trust/cont: the test frames' map against "
                 "their input windows at k=10; analogy: win rate of a1 - a0 + b0; P@10 sim: "
                 "precision at 10 in the model's similarity space, which the page's nearest "
                 "sounds search)")
    lines += score_notes(result)
    lines += [f"not scored: {line}" for line in score_errors(result["results"])]
    return "\n".join(lines)


def score_notes(result: dict) -> list[str]:
    """What a reader of the scores must know beside them, a sentence each: the cross-bank
    reference (what the k-NN was fitted on, the classes it left out, the files it has a copy
    of), the test classes no training frame has, each label's chance (the most common class's
    share), a k not chosen, and a label with one class. ``format_scores`` prints them under the
    table, and the report shows them under its own.

    Parameters
    ----------
    result : dict
        What ``soundatlas.evaluate.evaluate`` returns.

    Returns
    -------
    list of str
    """
    p = result["protocol"]
    lines: list[str] = []
    if p.get("protocol") == "cross-bank":
        lines.append(f"cross-bank: k-NN fitted on {p['n_frames']['train']} training frames of "
                     f"{p['reference']['atlas']} (k chosen on {p['n_frames']['valid']} of its "
                     "validation frames); every frame of this atlas is a test frame, and "
                     "every sample of it queries the reference's (P@10: among another "
                     "library's sounds alone)")
        shared = p["reference"].get("shared_files")
        if shared:
            lines.append(f"{shared} files of this atlas have a copy (the same content) among "
                         "the reference's training and validation files: their frames find "
                         "their own sound")
        gone = {k: c for k, c in p["reference"].get("left_out", {}).items() if c["classes"]}
        if gone:
            lines.append(
                "the k-NN chooses among the classes this atlas has: left out of it, the "
                "reference's " + "; ".join(f"{k!r}: {c['classes']} classes ({c['frames']} "
                                           "frames)" for k, c in gone.items())
                + " (--reference-classes all keeps them)")
    for key, classes in p.get("unmatched_classes", {}).items():
        if classes:
            named = ", ".join(f"{c} ({n})" for c, n in classes.items())
            where = "of the reference " if p.get("protocol") == "cross-bank" else ""
            lines.append(f"{sum(classes.values())} test frames have a {key!r} that no training "
                         f"frame {where}has, so the k-NN cannot name it: {named}")
    chance = p.get("test_classes", {})
    shares = [f"{k} {c['majority_share']:.3f}" for k, c in chance.items() if c["n_classes"] > 1]
    if shares:
        lines.append("the most common class's share of the test frames (what naming every frame "
                     "by it scores): " + ", ".join(shares))
    unchosen = sorted({k for r in result["results"].values() for k, a in
                       (r.get("accuracy") or {}).items()
                       if "k" in a and a.get("valid_accuracy") is None})
    if unchosen:  # a split without labelled validation files: k is not chosen, it is the least
        lines.append("k not chosen for " + ", ".join(repr(k) for k in unchosen) + ": no "
                     "labelled validation frame, so the smallest k was used")
    unmatched = p.get("unmatched_classes", {})
    for key, c in chance.items():
        if c["n_classes"] == 1 and not unmatched.get(key):  # (one no k-NN can name scores 0)
            scores = [(r.get("accuracy") or {}).get(key, {}).get("test_accuracy")
                      for r in result["results"].values()]
            if all(a == 1.0 for a in scores if a is not None):  # the training frames: one too
                lines.append(f"{key!r} has one class among the test frames ({c['majority']}): "
                             "every map scores 1.000 on it, which says nothing")
            else:  # the k-NN knows other classes, and may name them
                lines.append(f"{key!r} has one class among the test frames ({c['majority']}): "
                             f"its accuracy says how often the k-NN names {c['majority']}, not "
                             "how well the classes are told apart")
    return lines
