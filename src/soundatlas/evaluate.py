"""Scoring a map the way the reference did, and more, beside baselines.

Protocol (docs/DESIGN.md §1): per-frame embeddings; a k-NN classifier fitted on up to 100k frame
points of training files, k chosen on validation frames from {1,5,9,15,21,35,51,75,101}, accuracy
on test frames. Frames are drawn per file with probability proportional to their energy (8 per
file by default, as in the demo-library measurements of docs/DESIGN.md §1), so the silence after
a note, which is the same for every instrument, does not dominate the score.

Beyond the reference (``evaluate``): confusion matrices and per-class accuracy of that k-NN;
per-sample retrieval (precision at 10, MAP@R; test samples query all others) on the map
(``retrieval``) and, for models, in their similarity space (``retrieval_similarity``: the stored
vectors the page's nearest sounds search; ``retrieval_spaces`` says what each searched);
trustworthiness and continuity of the test frames' map against their input windows; acoustic
analogies a1 - a0 + b0 over test samples. A sample's point for retrieval (on the map) and
analogies is the mean of its evaluated frames' points (an estimate of the energy-weighted mean the
map shows), the same rule for the model and for every baseline (``soundatlas.baselines``).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from soundatlas.atlas.samples import damaged_features
from soundatlas.errors import AtlasError, ParameterError
from soundatlas.labels import label_of, label_parts
from soundatlas.retrieval import (  # noqa: F401 (similarity_retrieval: exported from here too)
    CROSS_OFFSET as _CROSS_OFFSET,
    groups as _groups,
    input_similarity_retrieval,
    per_label as _retrieval,
    searched as _searched,
    shared_files as _shared_files,
    similarity_retrieval,
    test_samples as _test_samples,
)

__all__ = ["KS", "knn_accuracy", "FrameSet", "frame_set", "model_frame_points",
           "sample_points", "score_points", "similarity_retrieval", "sorted_labels", "label_of",
           "default_labels", "Stages", "evaluate"]

KS = (1, 5, 9, 15, 21, 35, 51, 75, 101)


@dataclass
class FrameSet:
    """Chosen frames: which sample (atlas id) and which frame, per split.

    Attributes
    ----------
    sample_ids : ndarray of int64
        The sample of each chosen frame.
    frames : ndarray of int64
        The frame's index in its sample.
    split : ndarray of str
        The frame's split: 'train', 'valid' or 'test'.
    """

    sample_ids: np.ndarray
    frames: np.ndarray
    split: np.ndarray


def frame_set(atlas, *, n_per_file: int = 8, seed: int = 0,
              damaged: dict | None = None) -> FrameSet:
    """Up to ``n_per_file`` energy-weighted frames of every sample, with its split.

    Parameters
    ----------
    atlas : Atlas
        The atlas whose samples (and split) are evaluated.
    n_per_file : int, default 8
        Frames drawn per sample, without replacement, with probability proportional to their
        energy (fewer where a sample has fewer frames with energy).
    seed : int
        Seed of the draw.
    damaged : dict, optional
        Where to collect the damaged feature files instead of raising (``Atlas.each_features``);
        their samples are left out.

    Returns
    -------
    FrameSet
        The chosen frames, each sample's in frame order.

    Raises
    ------
    ParameterError
        When ``n_per_file`` is below 1.
    AtlasError
        When feature files cannot be read (every damaged one named, with the repair; with
        ``damaged``, they are collected there instead, as ``Atlas.each_features`` does).
    """
    from soundatlas.embed import frame_energy

    if n_per_file < 1:
        raise ParameterError(f"n_per_file={n_per_file} must be at least 1")
    rng = np.random.default_rng(seed)
    splits = atlas.splits()
    sids, frames, split = [], [], []
    for rec, F in atlas.each_features(atlas.samples(), damaged=damaged):
        energy = frame_energy(F)
        p = energy / energy.sum() if energy.sum() > 0 else None
        n = min(n_per_file, int(np.count_nonzero(energy)) if p is not None else len(energy))
        chosen = rng.choice(len(energy), size=max(1, n), replace=False, p=p)
        sids += [rec.id] * len(chosen)
        frames += list(np.sort(chosen))
        split += [splits[rec.id]] * len(chosen)
    return FrameSet(np.array(sids, np.int64), np.array(frames, np.int64), np.array(split))


def knn_accuracy(
    X_train, y_train, X_valid, y_valid, X_test, y_test, *,
    ks=KS, max_train: int = 100_000, seed: int = 0, return_predictions: bool = False,
) -> dict:
    """Fit k-NN on (at most ``max_train``) training points, pick k on validation, score test.

    Parameters
    ----------
    X_train, X_valid, X_test : array-like of shape (n, dims)
        The points of each split.
    y_train, y_valid, y_test : array-like of shape (n,)
        Their labels: any hashable values; points whose label is None are left out.
    ks : sequence of int
        The k to choose from (those above the number of training points are dropped).
    max_train : int
        At most this many training points, drawn with ``seed``.
    seed : int
        Seed of that draw.
    return_predictions : bool
        Also return the labelled test points' labels and predictions.

    Returns
    -------
    dict
        {'k', 'valid_accuracy', 'test_accuracy', 'valid_by_k', 'n_train', 'n_test'}, and with
        ``return_predictions`` also 'y_test' and 'predictions' (as str). Without validation
        points, k is the smallest of ``ks`` and 'valid_accuracy' is None.

    Raises
    ------
    ParameterError
        When there is no labelled training or test point.
    """
    from sklearn.neighbors import KNeighborsClassifier

    X_train, y_train = _labelled(X_train, y_train)
    X_valid, y_valid = _labelled(X_valid, y_valid)
    X_test, y_test = _labelled(X_test, y_test)
    if len(X_train) == 0 or len(X_test) == 0:
        raise ParameterError("k-NN accuracy needs labelled training and test points")
    if len(X_train) > max_train:
        keep = np.random.default_rng(seed).choice(len(X_train), max_train, replace=False)
        X_train, y_train = X_train[keep], y_train[keep]
    ks = [k for k in ks if k <= len(X_train)] or [1]
    clf = KNeighborsClassifier(n_neighbors=max(ks)).fit(X_train, y_train)
    valid_by_k = {}
    if len(X_valid):
        for k, pred in zip(ks, _predict_many(clf, X_valid, ks, y_train)):
            valid_by_k[k] = float(np.mean(pred == y_valid))
        best = max(ks, key=lambda k: (valid_by_k[k], -k))
    else:
        best = ks[0]
    pred = _predict_many(clf, X_test, [best], y_train)[0]
    out = {"k": int(best), "valid_accuracy": valid_by_k.get(best), "test_accuracy":
           float(np.mean(pred == y_test)), "valid_by_k": valid_by_k,
           "n_train": int(len(X_train)), "n_test": int(len(X_test))}
    if return_predictions:
        out["y_test"], out["predictions"] = y_test, pred
    return out


def _labelled(X, y):
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=object)
    keep = np.array([v is not None for v in y], dtype=bool)
    return X[keep], y[keep].astype(str)


def _predict_many(clf, X, ks, y_train):
    """Majority votes among the k nearest for several k from one neighbour search."""
    _, idx = clf.kneighbors(X, n_neighbors=max(ks))
    classes, codes = np.unique(y_train, return_inverse=True)
    neigh = codes[idx]
    out = []
    for k in ks:
        counts = np.zeros((len(X), len(classes)), dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(len(X)), k), neigh[:, :k].ravel()), 1)
        # ties go to the class of the nearest neighbour among the tied ones
        best = counts.max(axis=1, keepdims=True)
        tied = counts == best
        first = np.array([next(c for c in row if tied[i, c]) for i, row in enumerate(neigh[:, :k])])
        out.append(classes[first])
    return out


def model_frame_points(atlas, model_id: int, fs: FrameSet) -> np.ndarray:
    """The model's embedding of each chosen frame, from the stored trajectories.

    Parameters
    ----------
    atlas : Atlas
        The atlas holding the model's trajectories.
    model_id : int
        The registered model's id.
    fs : FrameSet
        The chosen frames.

    Returns
    -------
    ndarray of shape (len(fs.sample_ids), dims)

    Raises
    ------
    AtlasError
        When a chosen sample has no trajectory for the model.
    """
    out = np.zeros((len(fs.sample_ids), 0), np.float32)
    wanted = sorted(set(fs.sample_ids.tolist()))
    trajectories = atlas.trajectories(model_id, wanted)
    missing = [sid for sid in wanted if sid not in trajectories]
    if missing:
        raise AtlasError(f"sample {missing[0]} has no embedding for model {model_id}")
    rows = [trajectories[int(sid)][f] for sid, f in zip(fs.sample_ids, fs.frames)]
    return np.stack(rows) if rows else out


# -- the whole evaluation --------------------------------------------------------------------------


def sample_points(points: np.ndarray, fs: FrameSet) -> tuple[np.ndarray, np.ndarray]:
    """One point per sample: the mean of its evaluated frames' points.

    Parameters
    ----------
    points : ndarray of shape (n, dims)
        One point per frame of ``fs``.
    fs : FrameSet
        The frames.

    Returns
    -------
    ids : ndarray of int64
        The sample ids, sorted.
    points : ndarray of shape (len(ids), dims), float32
        Each sample's mean point.
    """
    ids, inverse = np.unique(fs.sample_ids, return_inverse=True)
    sums = np.zeros((len(ids), points.shape[1]), np.float64)
    np.add.at(sums, inverse, points)
    counts = np.bincount(inverse, minlength=len(ids))[:, None]
    return ids, (sums / counts).astype(np.float32)


def score_points(points: np.ndarray, fs: FrameSet, labels: dict[str, dict[int, str]], *,
                 X_input: np.ndarray | None = None, n_analogies: int = 500, seed: int = 0,
                 quality: bool = True, outcomes: dict | None = None,
                 content: dict[int, str] | None = None) -> dict:
    """Every metric for one set of frame points (a model's or a baseline's).

    Parameters
    ----------
    points : ndarray of shape (n, dims)
        One point per frame of ``fs``.
    fs : FrameSet
        The frames and their splits.
    labels : dict
        label key -> {sample id: value}.
    X_input : ndarray of shape (n, n_features), optional
        The frames' input windows, for trustworthiness and continuity (skipped when None,
        when ``quality`` is false, or when the points are no fewer dimensions than the windows).
    n_analogies : int
        Analogy triples to score (0: none); needs the labels instrument and pitch.
    seed : int
        Seed of every random choice.
    quality : bool
        Whether to score trustworthiness and continuity.
    outcomes : dict, optional
        Filled with label -> (each labelled test frame's sample id, whether the k-NN got it
        right), for comparing maps on the same frames.
    content : dict, optional
        sample id -> content hash: a query's copies (the same file at other paths) are left
        out of what its retrieval may find (``metrics.retrieval``'s ``groups``).

    Returns
    -------
    dict
        {'dims', 'accuracy': {label: knn_accuracy(...) and 'test_interval'}, 'confusion':
        {label: ...}, 'retrieval': {label: ...}}, with 'manifold' and 'analogies' where
        scored; a label that cannot be scored has {'error': why} in place of its numbers, and
        so has 'manifold' with fewer than two test frames. 'test_interval' is the 95 %
        bootstrap interval of the test accuracy over test files
        (:func:`soundatlas.metrics.accuracy_interval`), None with fewer than two.
    """
    from soundatlas import metrics

    points = np.asarray(points, dtype=np.float32)
    out: dict = {"dims": int(points.shape[1]), "accuracy": {}, "confusion": {}, "retrieval": {}}
    for key, by_id in labels.items():
        y = np.array([by_id.get(int(s)) for s in fs.sample_ids], dtype=object)
        parts = {name: fs.split == name for name in ("train", "valid", "test")}
        try:
            r = knn_accuracy(points[parts["train"]], y[parts["train"]],
                             points[parts["valid"]], y[parts["valid"]],
                             points[parts["test"]], y[parts["test"]], seed=seed,
                             return_predictions=True)
        except ParameterError as exc:
            out["accuracy"][key] = {"error": str(exc)}
            continue
        y_test, pred = r.pop("y_test"), r.pop("predictions")
        labelled = np.array([v is not None for v in y[parts["test"]]], dtype=bool)
        test_ids = fs.sample_ids[parts["test"]][labelled]  # as knn_accuracy keeps them
        correct = pred == y_test
        r["test_interval"] = metrics.accuracy_interval(correct, test_ids, seed=seed)
        if outcomes is not None:
            outcomes[key] = (test_ids, correct)
        out["accuracy"][key] = r
        out["confusion"][key] = metrics.confusion(
            y_test, pred, labels=sorted_labels(np.concatenate([y_test, pred])))
    ids, spoints = sample_points(points, fs)
    sample_labels = {key: np.array([by_id.get(int(i)) for i in ids], dtype=object)
                     for key, by_id in labels.items()}
    test = _test_samples(ids, fs)
    out["retrieval"] = _retrieval(spoints, test, sample_labels, groups=_groups(ids, content),
                                  database=_searched(ids))
    if quality and X_input is not None and points.shape[1] < X_input.shape[1]:
        t = fs.split == "test"
        if t.sum() < 2:  # a tiny atlas: no neighbourhood to keep or break
            out["manifold"] = {"error": f"{int(t.sum())} test frame{'s' if t.sum() != 1 else ''}"
                               ": trustworthiness and continuity need at least 2"}
        else:
            out["manifold"] = metrics.manifold_quality(X_input[t], points[t], seed=seed)
    if n_analogies and {"instrument", "pitch"} <= set(sample_labels):
        try:
            out["analogies"] = metrics.analogies(
                spoints, sample_labels["instrument"], sample_labels["pitch"], n=n_analogies,
                seed=seed, candidates=test)
        except ParameterError as exc:
            out["analogies"] = {"error": str(exc)}
    return out


def sorted_labels(values) -> list[str]:
    """Class names in a readable order, each once.

    Parameters
    ----------
    values : iterable
        Label values (written with ``str``).

    Returns
    -------
    list of str
        Numerically sorted when they all are numbers (MIDI pitches: 24, 25, ... 108), else
        alphabetically.
    """
    uniq = sorted(set(str(v) for v in values))
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return uniq


def default_labels(atlas) -> list[str]:
    """The labels scored when none are named.

    Returns
    -------
    list of str
        instrument and pitch, those of the two the atlas has; else its folders; else its first
        label.

    Raises
    ------
    ParameterError
        When the atlas has no labels.
    """
    known = set(atlas.label_summary())
    chosen = [k for k in ("instrument", "pitch") if k in known]
    if chosen:
        return chosen
    if "folder" in known:
        return ["folder"]
    if known:
        return [sorted(known)[0]]
    raise ParameterError("the atlas has no labels to score; index it with labels (a metadata.csv, "
                         "folders or --name-pattern)")


#: what a cross-bank k-NN chooses among: the classes the scored atlas has, or all the
#: reference's (``evaluate``'s ``reference_classes``)
REFERENCE_CLASSES = ("held", "all")


def evaluate(atlas, models=(), *, baselines=(), labels=None, reference=None,
             reference_classes: str = "held", n_per_file: int = 8, n_analogies: int = 500,
             seed: int = 0, progress=None) -> dict:
    """Score ``models`` and ``baselines`` on the same frames, split and labels.

    Parameters
    ----------
    atlas : Atlas
        The scored atlas.
    models : sequence of str
        Model names in the atlas, each fully embedded.
    baselines : sequence of str
        Names in ``soundatlas.baselines.BASELINES``.
    labels : sequence of str, optional
        The labels to score (``A+B`` for a pair); None: :func:`default_labels`.
    reference : Atlas, optional
        Another open atlas, for the cross-bank protocol. The k-NN (and every baseline's
        projection) is then fitted on the reference's training frames, k chosen on its
        validation frames, and every frame of this atlas is a test frame: whether a sound of
        this library lands among the reference's sounds of its class. Labels are compared by
        value. Each model must be embedded
        in both atlases with the same weights. In either protocol, a class of the test frames
        that no training frame has cannot be named; the protocol's ``unmatched_classes`` gives
        each such class, by label, with its number of test frames.
    reference_classes : {'held', 'all'}
        With ``reference``, what the k-NN of a label chooses among: the values this atlas
        has ('held', the default: the reference's frames of other classes are left out, and
        the protocol's ``reference.left_out`` counts them by label), or every value of the
        reference ('all': a sound may also be taken for a class this library lacks).
    n_per_file : int
        Energy-weighted frames per sample (:func:`frame_set`).
    n_analogies : int
        Analogy triples per map (0: none).
    seed : int
        Seed of the frames, the input noise, the baselines and the metrics.
    progress : callable, optional
        ``progress(done, total, stage)``, called after each stage.

    Returns
    -------
    dict
        {'protocol': {...}, 'results': {name: score_points(...)}}; baselines are named
        'baseline:NAME', a baseline that fits on labels (``uses_labels``) says which in
        'lda_label', and a baseline that could not be fitted has {'error': why}. Every map
        after the first model has, in each label's accuracy, 'against': {'model': the first
        model, 'difference': its accuracy minus the first model's, 'interval': the 95 %
        bootstrap interval of that difference, test files resampled alike for both}.

    Raises
    ------
    ParameterError
        For an unknown baseline or label, nothing to score, or a reference that does not
        match (other CQT parameters, other weights).
    """
    from soundatlas.baselines import BASELINES, make_baseline

    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ParameterError(f"unknown baseline {unknown[0]!r} (known: {', '.join(BASELINES)})")
    if not models and not baselines:
        raise ParameterError("nothing to evaluate: name a model or a baseline")
    if reference_classes not in REFERENCE_CLASSES:
        raise ParameterError(f"reference_classes={reference_classes!r} must be one of "
                             f"{', '.join(REFERENCE_CLASSES)}")
    atlases = [atlas] if reference is None else [reference, atlas]
    known = set(atlas.label_summary())
    labels = default_labels(atlas) if not labels else list(dict.fromkeys(labels))  # each once
    for a in atlases[::-1]:  # this atlas first
        have = set(a.label_summary())
        missing = [part for k in labels for part in label_parts(k, known) if part not in have]
        if missing:
            where = "the atlas" if a is atlas else f"the reference atlas {a.path}"
            raise ParameterError(f"label {missing[0]!r} is not in {where}; available: "
                                 f"{', '.join(sorted(have)) or '(none)'} (and A+B for a pair)")
    if reference is not None and reference.cqt_params != atlas.cqt_params:
        raise ParameterError(f"the reference atlas {reference.path} has other CQT parameters "
                             f"({reference.cqt_params}) than {atlas.path} ({atlas.cqt_params})")
    from soundatlas.artifact import embed_from, model_difference

    if reference is not None:  # a model one atlas has and the other lacks: the way to embed it
        for name in models:
            have = [a.find_model(name) for a in atlases]
            if (have[0] is None) != (have[1] is None):
                (src, rec), dst = ((reference, have[0]), atlas) if have[0] else \
                    ((atlas, have[1]), reference)
                raise ParameterError(f"no model named {name!r} in {dst.path}, which {src.path} "
                                     f"has: `{embed_from(dst, src, rec)}` embeds it")
    registered = [[_fully_embedded(a, name) for a in atlases] for name in models]
    for per_atlas in registered:
        differ = len(per_atlas) == 2 and model_difference(reference, per_atlas[0], atlas,
                                                          per_atlas[1])
        if differ:
            raise ParameterError(
                f"model {per_atlas[0].name!r} differs between the reference atlas and this "
                f"one ({differ}); cross-bank scoring needs the same model embedded in both")
    step = Stages(2 + len(models) + len(baselines), progress)
    damaged: dict = {}  # every damaged feature file of both atlases, named at once
    parts = [_Part(a, frame_set(a, n_per_file=n_per_file, seed=seed, damaged=damaged), i)
             for i, a in enumerate(atlases)]
    if damaged:
        raise damaged_features(damaged)
    if reference is not None:  # the reference's test files play no part; all of this atlas's do
        ref, held = parts
        keep = ref.fs.split != "test"
        ref.fs = FrameSet(ref.fs.sample_ids[keep], ref.fs.frames[keep], ref.fs.split[keep])
        held.fs.split = np.full(len(held.fs.split), "test")
    fs = FrameSet(np.concatenate([p.ids() for p in parts]),
                  np.concatenate([p.fs.frames for p in parts]),
                  np.concatenate([p.fs.split for p in parts]))
    # the map's own guesses (suggest --apply) are no truth to score it by
    label_values = {key: {p.offset + sid: v for p in parts
                          for sid, v in label_of(p.atlas, key, known, suggested=False).items()}
                    for key in labels}
    left_out: dict = {}
    if reference is not None and reference_classes == "held":
        # the k-NN chooses among the classes this library has
        fitted_ids = fs.sample_ids[fs.split != "test"]  # the reference's training and
        for key, values in label_values.items():         # validation frames
            here = {v for sid, v in values.items() if sid >= _CROSS_OFFSET}
            gone = [s for s, v in values.items() if s < _CROSS_OFFSET and v not in here]
            left_out[key] = {"classes": len({values[s] for s in gone}),
                             "frames": int(np.isin(fitted_ids, gone).sum())}
            for sid in gone:
                del values[sid]
    fitted = set(fs.sample_ids[fs.split == "train"].tolist())
    tested = fs.sample_ids[fs.split == "test"]
    unmatched = {key: _unmatched_classes(values, fitted, tested)
                 for key, values in label_values.items()}
    test_classes = {key: _test_classes(values, tested) for key, values in label_values.items()}
    X = np.concatenate([p.windows(seed) for p in parts])
    # a file at two paths (or in both atlases) is one sound: its copy is no neighbour to find
    content = {p.offset + sid: h for p in parts for sid, h, _path in p.atlas.iter_ids_hashes()}
    step("input windows")
    results, outcomes = {}, {}
    for per_atlas in registered:
        pts = np.concatenate([model_frame_points(p.atlas, m.id, p.fs)
                              for p, m in zip(parts, per_atlas)])
        results[per_atlas[0].name] = score_points(
            pts, fs, label_values, X_input=X, n_analogies=n_analogies, seed=seed,
            outcomes=outcomes.setdefault(per_atlas[0].name, {}), content=content)
        results[per_atlas[0].name].update(
            similarity_retrieval(parts, per_atlas, fs, label_values, content=content))
        step(per_atlas[0].name)
    train = fs.split == "train"
    lda_key = "instrument" if "instrument" in label_values else next(iter(label_values), None)
    lda_y = ([label_values[lda_key].get(int(s)) for s in fs.sample_ids] if lda_key else None)
    for b in baselines:
        baseline = make_baseline(b, seed=seed)
        try:
            pts = baseline.points(X, train, lda_y)
            results[f"baseline:{b}"] = score_points(
                pts, fs, label_values, X_input=X, n_analogies=n_analogies, seed=seed,
                outcomes=outcomes.setdefault(f"baseline:{b}", {}), content=content)
            if baseline.uses_labels:
                results[f"baseline:{b}"]["lda_label"] = lda_key
            if b == "input":  # beside the models' P@10 in their similarity space
                results[f"baseline:{b}"].update(
                    input_similarity_retrieval(parts, fs, label_values, content=content))
        except ParameterError as exc:
            results[f"baseline:{b}"] = {"error": str(exc)}
        step(f"baseline {b}")
    if registered:
        _compare(results, outcomes, registered[0][0].name, seed=seed)
    for per_atlas in registered:  # what each scored model is: its figures stay traceable
        results[per_atlas[0].name]["model"] = model_identity(atlas, per_atlas[-1])
    counts = {name: int(np.sum(fs.split == name)) for name in ("train", "valid", "test")}
    from soundatlas import __version__

    protocol = {"atlas": str(atlas.path), "soundatlas": __version__,
                "frames_per_file": n_per_file, "seed": seed, "labels": list(labels),
                "interval": "95 % percentile bootstrap over test files, 1,000 resamples",
                "n_frames": counts,  # this atlas's samples: the reference's are below
                "n_samples": int(len(np.unique(parts[-1].fs.sample_ids))),
                "split_seed": int(atlas.meta("split_seed") or 0), "ks": list(KS),
                "protocol": "within-set" if reference is None else "cross-bank",
                "unmatched_classes": unmatched, "test_classes": test_classes}
    if reference is not None:
        protocol["reference"] = {"atlas": str(reference.path),
                                 "n_samples": int(len(np.unique(parts[0].fs.sample_ids))),
                                 "split_seed": int(reference.meta("split_seed") or 0),
                                 "classes": reference_classes, "left_out": left_out,
                                 # files of this atlas that the k-NN has a copy of: each finds
                                 # its own sound among the fitted frames
                                 "shared_files": _shared_files(parts, content)}
    step("done")
    return {"protocol": protocol, "results": results}


def model_identity(atlas, model) -> dict:
    """What tells a scored model from another of its name (``--replace`` reuses names): its
    folder, the digest of its weights, and from its config the neighbourhood, seed,
    iterations and the model it started from."""
    from soundatlas.artifact import weights_digest

    config = model.config or {}
    start = config.get("init_from")
    return {"dir": model.dir, "weights_sha256": weights_digest(atlas, model),
            "neighbourhood": (config.get("neighbourhood") or {}).get("spec")
            or (config.get("neighbourhood") or {}).get("name"),
            "seed": config.get("seed"),
            "iterations": (config.get("training") or {}).get("iterations"),
            "init_from": start.get("name") if isinstance(start, dict) else start}


def _compare(results: dict, outcomes: dict, first: str, *, seed: int) -> None:
    """Give every other map's accuracy its difference from the first model's, on the same
    test frames, with the paired bootstrap interval of that difference ('against')."""
    from soundatlas.metrics import accuracy_interval

    for name, by_label in outcomes.items():
        if name == first:
            continue
        for key, (ids, correct) in by_label.items():
            if key not in outcomes[first] or key not in results[name].get("accuracy", {}):
                continue  # (a map whose scoring failed after this label has no accuracy)
            first_ids, first_correct = outcomes[first][key]
            if not np.array_equal(ids, first_ids):  # cannot happen with one frame set
                continue
            results[name]["accuracy"][key]["against"] = {
                "model": first,
                "difference": float(np.mean(correct) - np.mean(first_correct)),
                "interval": accuracy_interval(correct, ids, against=first_correct, seed=seed)}


class Stages:
    """Counts the stages of a long task and reports each to a progress callback.

    Parameters
    ----------
    total : int
        The number of stages.
    progress : callable, optional
        ``progress(done, total, stage)``, called by each :meth:`__call__`; None: nothing.
    """

    def __init__(self, total: int, progress=None):
        self.total, self.progress, self.done = total, progress, 0

    def __call__(self, stage: str) -> None:
        """Mark stage ``stage`` done."""
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, stage)



def _unmatched_classes(values: dict, fitted: set, tested: np.ndarray) -> dict:
    """The classes of this atlas's test frames that no frame the k-NN is fitted on has, each
    with its number of test frames: a k-NN cannot name them, so those frames are always wrong.
    """
    known = {values[s] for s in fitted if s in values}
    counts = collections.Counter(values[s] for s in tested.tolist()
                                 if s in values and values[s] not in known)
    return dict(sorted(counts.items(), key=lambda kv: str(kv[0])))


def _test_classes(values: dict, tested: np.ndarray) -> dict:
    """How many classes the labelled test frames have, and the share of the most common one: a
    map that named every frame by it would score that (chance); one class scores 1.000."""
    counts = collections.Counter(values[s] for s in tested.tolist() if s in values)
    if not counts:
        return {"n_classes": 0, "majority": None, "majority_share": None}
    top, n = max(counts.items(), key=lambda kv: (kv[1], str(kv[0])))
    return {"n_classes": len(counts), "majority": top,
            "majority_share": n / sum(counts.values())}


class _Part:
    """One atlas's share of the evaluated frames (the reference's, or this atlas's)."""

    def __init__(self, atlas, fs: FrameSet, index: int):
        self.atlas, self.fs = atlas, fs
        self.offset = 0 if index == 0 else _CROSS_OFFSET * index

    def ids(self) -> np.ndarray:
        return self.fs.sample_ids + self.offset

    def windows(self, seed: int) -> np.ndarray:
        from soundatlas.baselines import input_windows

        return input_windows(self.atlas, self.fs, seed=seed)


def _fully_embedded(atlas, name: str):
    from soundatlas.errors import SoundAtlasError

    m = atlas.model(name)
    if m.n_embedded < atlas.n_samples():
        raise SoundAtlasError(
            f"model {name} has embedded {m.n_embedded} of {atlas.n_samples()} samples of "
            f"{atlas.path}; run `soundatlas embed --atlas {atlas.path} --model {name}` first")
    return m

