"""Map metrics on hand-made point sets with known answers (and a naive loop for retrieval)."""

from __future__ import annotations

import numpy as np
import pytest

from soundatlas.errors import ParameterError
from soundatlas.metrics import accuracy_interval, analogies, confusion, manifold_quality, retrieval

# ------------------------------------------------------------------------------------ retrieval

LINE_X = np.array([[0.0], [1.0], [3.0], [7.0], [15.0]])
LINE_Y = np.array(["A", "A", "B", "A", "B"], dtype=object)
# Other points by distance, R = other points with the query's label, rel over the first R:
#   x=0  (A): 1(A) 3(B) 7(A) 15(B)  R=2  rel 1,0  AP = (1/2)(1/1)       = 0.5
#   x=1  (A): 0(A) 3(B) 7(A) 15(B)  R=2  rel 1,0  AP = (1/2)(1/1)       = 0.5
#   x=3  (B): 1(A) 0(A) 7(A) 15(B)  R=1  rel 0    AP = 0
#   x=7  (A): 3(B) 1(A) 0(A) 15(B)  R=2  rel 0,1  AP = (1/2)(1/2)       = 0.25
#   x=15 (B): 7(A) 3(B) 1(A) 0(A)   R=1  rel 0    AP = 0
# MAP@R = 1.25 / 5 = 0.25; precision@1 = (1 + 1 + 0 + 0 + 0) / 5 = 0.4
LINE_MAP_AT_R = 0.25
LINE_P_AT_1 = 0.4


def naive_retrieval(X, y, queries, k):
    """One query at a time: sort the other labelled points by distance, score the list."""
    labelled = [i for i in range(len(y)) if y[i] is not None]
    precisions, aps = [], []
    for q in queries:
        if y[q] is None:
            continue
        others = [i for i in labelled if i != q]
        others.sort(key=lambda i: float(np.linalg.norm(X[i] - X[q])))
        rel = [y[i] == y[q] for i in others]
        precisions.append(sum(rel[:k]) / k)
        r = sum(rel)
        if r:
            aps.append(sum(sum(rel[:i + 1]) / (i + 1) for i in range(r) if rel[i]) / r)
    return np.mean(precisions), np.mean(aps)


def test_retrieval_line_matches_hand_computed_map_at_r():
    out = retrieval(LINE_X, LINE_Y, k=1)
    assert out["map_at_r"] == pytest.approx(LINE_MAP_AT_R)
    assert out["precision_at_k"] == pytest.approx(LINE_P_AT_1)
    assert (out["k"], out["n_queries"], out["n_skipped"]) == (1, 5, 0)


def test_retrieval_matches_naive_loop_on_random_points():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 3))
    y = rng.choice(np.array(["a", "b", "c"], dtype=object), 60)
    y[[4, 9]] = None
    queries = np.array([0, 3, 4, 10, 22, 37, 59])  # 4 is unlabelled: not a query
    for k in (1, 5):
        out = retrieval(X, y, queries=queries, k=k)
        precision, map_at_r = naive_retrieval(X, y, queries, k)
        assert out["precision_at_k"] == pytest.approx(precision)
        assert out["map_at_r"] == pytest.approx(map_at_r)
        assert out["n_queries"] == 6
    mask = np.zeros(60, dtype=bool)
    mask[queries] = True
    assert retrieval(X, y, queries=mask, k=5) == retrieval(X, y, queries=queries, k=5)


def test_retrieval_within_a_database_finds_its_points_alone():
    """Cross-bank: queries outside the database search it alone (a naive loop over it), and
    a query inside it still never finds itself; copies (groups) are left out as before."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((80, 3))
    y = rng.choice(np.array(["a", "b", "c"], dtype=object), 80)
    db, q = np.arange(50), np.arange(50, 80)
    out = retrieval(X, y, queries=q, k=5, database=db)
    hits, aps = [], []
    for i in q:
        d = np.linalg.norm(X[db] - X[i], axis=1)
        order = db[np.argsort(d, kind="stable")]
        rel = y[order] == y[i]
        hits.append(rel[:5].mean())
        r = int(rel.sum())
        aps.append(np.sum(np.cumsum(rel[:r]) / np.arange(1, r + 1) * rel[:r]) / r)
    assert out["precision_at_k"] == pytest.approx(np.mean(hits))
    assert out["map_at_r"] == pytest.approx(np.mean(aps))
    assert out["n_queries"] == 30
    mask = np.zeros(80, dtype=bool)
    mask[db] = True
    assert retrieval(X, y, queries=q, k=5, database=mask) == out
    # a query inside the database: as without one, if the database is every point
    assert retrieval(X, y, queries=q, k=5, database=np.arange(80)) == retrieval(X, y, queries=q,
                                                                               k=5)
    # a copy of a query in the database (same group) is not found; k counts what is left
    Xc = np.concatenate([X, X[50:51]])  # point 80: a copy of query 50, put in the database
    yc = np.concatenate([y, y[50:51]])
    groups = np.concatenate([np.arange(80), [50]])
    with_copy = retrieval(Xc, yc, queries=[50], k=5, database=np.append(db, 80), groups=groups)
    alone = retrieval(X, y, queries=[50], k=5, database=db)
    assert with_copy == alone
    with pytest.raises(ParameterError, match="k=51 must be at most the number of other "
                                             r"labelled points \(50\)"):
        retrieval(X, y, queries=q, k=51, database=db)


def test_retrieval_separated_clusters_score_one():
    rng = np.random.default_rng(2)
    centres = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0]], dtype=float)
    X = np.repeat(centres, 20, axis=0) + rng.standard_normal((60, 3))
    y = np.repeat(["flute", "organ", "voice"], 20)
    out = retrieval(X, y, k=5)
    assert out["precision_at_k"] == 1.0
    assert out["map_at_r"] == pytest.approx(1.0)


def test_retrieval_random_labels_score_near_chance():
    rng = np.random.default_rng(3)
    n_classes = 5
    X = rng.standard_normal((1500, 3))
    y = rng.integers(n_classes, size=1500)
    out = retrieval(X, y, k=10)
    assert abs(out["precision_at_k"] - 1 / n_classes) < 0.05
    assert out["map_at_r"] < 0.1  # AP@R of a random ranking is about (1/C)^2


def test_retrieval_exact_duplicates_never_match_the_query_itself():
    # At each position an A point and a B point coincide (order alternates, so whichever
    # way ties are listed, distance-based leave-one-out would keep some queries' own point).
    # Gaps grow, so each position has one unique nearest other position.
    pos = np.array([0.0, 1.0, 3.0, 7.0, 15.0])
    X = np.repeat(pos, 2)[:, None]
    y = np.array(["A", "B", "B", "A", "A", "B", "B", "A", "A", "B"], dtype=object)
    # k=1: the nearest other point is the duplicate of the other class, always wrong
    assert retrieval(X, y, k=1)["precision_at_k"] == 0.0
    # k=3: the duplicate (wrong) then both points of the nearest position (one right)
    assert retrieval(X, y, k=3)["precision_at_k"] == pytest.approx(1 / 3)
    # a duplicate of the same class is another point and counts as a match
    same = np.repeat(["A", "B", "A", "B", "A"], 2).astype(object)
    assert retrieval(X, same, k=1)["precision_at_k"] == 1.0


def test_retrieval_leaves_out_a_querys_copies_when_told_its_groups():
    """Each query's point copied once (a file at two paths): without groups the copy is found
    first, at distance 0, and counted; told the groups, the figures are those of the points
    alone, as the naive loop gives them."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 3))
    y = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), 40)
    queries = np.arange(0, 40, 3)
    alone = retrieval(X, y, queries=queries, k=5)
    assert (alone["precision_at_k"], alone["map_at_r"]) == pytest.approx(
        naive_retrieval(X, y, queries, 5))
    gained = []
    for q in queries:  # one query's point at two paths, the rest as they are
        X2, y2 = np.concatenate([X, X[[q]]]), np.concatenate([y, y[[q]]])
        groups = np.append(np.arange(40), q).astype(str)
        one = retrieval(X, y, queries=[q], k=5)
        copied = retrieval(X2, y2, queries=[q], k=5)
        told = retrieval(X2, y2, queries=[q], k=5, groups=groups)
        gained.append(copied["precision_at_k"] - one["precision_at_k"])
        assert told["precision_at_k"] == pytest.approx(one["precision_at_k"])
        assert told["map_at_r"] == pytest.approx(one["map_at_r"])
    assert np.mean(gained) > 0.05  # without groups, the copy is a free hit
    # many copies of one file that queries nothing do not stop the others' k
    crowd = np.concatenate([X, np.repeat(X[:1], 35, axis=0)])
    crowd_y = np.concatenate([y, np.repeat(y[:1], 35)])
    crowd_groups = np.concatenate([np.arange(40), np.zeros(35, int)]).astype(str)
    assert retrieval(crowd, crowd_y, queries=np.arange(1, 40), k=40,
                     groups=crowd_groups)["n_queries"] == 39
    with pytest.raises(ParameterError, match="groups has 3 entries for 40 points"):
        retrieval(X, y, k=5, groups=["x", "y", "z"])


def test_retrieval_leaves_unlabelled_points_out():
    X = np.vstack([LINE_X, LINE_X, [[2.0], [5.0]]])  # unlabelled copies and points in between
    y = np.concatenate([LINE_Y, [None] * 7]).astype(object)
    out = retrieval(X, y, k=1)
    assert out["map_at_r"] == pytest.approx(LINE_MAP_AT_R)
    assert out["precision_at_k"] == pytest.approx(LINE_P_AT_1)
    assert out["n_queries"] == 5
    assert retrieval(X, y, queries=[0, 6, 11], k=1)["n_queries"] == 1


def test_retrieval_skips_queries_without_other_members():
    y = np.array(["A", "A", "B", "A", "C"], dtype=object)  # x=3 and x=15 are alone
    out = retrieval(LINE_X, y, k=1)
    assert out["n_skipped"] == 2
    # A queries: x=0 rel 1,0 (AP 1/2); x=1 rel 1,0 (1/2); x=7 first A at rank 2 (1/4)
    assert out["map_at_r"] == pytest.approx(1.25 / 3)
    assert retrieval(LINE_X, ["A", "B", "C", "D", "E"], k=1)["map_at_r"] is None


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k=0"),
    ({"k": 5}, "k=5"),  # only 4 other labelled points
    ({"queries": [7]}, "queries"),
    ({"queries": np.ones(3, dtype=bool)}, "queries"),
    ({"queries": [2.5]}, "queries"),
])
def test_retrieval_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        retrieval(LINE_X, LINE_Y, **kwargs)


def test_retrieval_rejects_bad_inputs():
    with pytest.raises(ParameterError, match="no points"):
        retrieval(np.zeros((0, 3)), [], k=1)
    with pytest.raises(ParameterError, match="y has 4"):
        retrieval(LINE_X, LINE_Y[:4], k=1)
    with pytest.raises(ParameterError, match="labelled query"):
        retrieval(LINE_X, [None] * 5, k=1)

# ----------------------------------------------------------------------------- manifold quality


def test_isometric_embedding_has_perfect_trustworthiness_and_continuity():
    rng = np.random.default_rng(4)
    Z = rng.standard_normal((150, 3))
    basis, _ = np.linalg.qr(rng.standard_normal((8, 3)))  # 3 orthonormal columns in 8-D
    rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    X_high = Z @ basis.T + 5.0
    X_low = Z @ rotation - 2.0
    out = manifold_quality(X_high, X_low, ks=(5, 10, 20))
    assert out["trustworthiness"] == pytest.approx({5: 1.0, 10: 1.0, 20: 1.0})
    assert out["continuity"] == pytest.approx({5: 1.0, 10: 1.0, 20: 1.0})
    assert (out["n_points"], out["skipped_ks"]) == (150, [])
    random = manifold_quality(X_high, rng.standard_normal((150, 3)), ks=(5, 10, 20))
    assert all(v < 0.8 for v in random["trustworthiness"].values())
    assert all(v < 0.8 for v in random["continuity"].values())


def test_manifold_quality_skips_k_of_half_the_points_or_more():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((30, 4))
    out = manifold_quality(X, X[:, :3], ks=(np.int64(5), 10, 15, 20))
    assert list(out["trustworthiness"]) == [5, 10]
    assert all(type(k) is int for k in out["continuity"])
    assert out["skipped_ks"] == [15, 20]


def test_manifold_quality_subsamples_the_same_rows_deterministically():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((300, 5))
    out = manifold_quality(X, X[:, :3], ks=(5, 25), max_points=50, seed=1)
    assert out["n_points"] == 50
    assert out["skipped_ks"] == [25]
    assert out == manifold_quality(X, X[:, :3], ks=(5, 25), max_points=50, seed=1)
    # the same rows on both sides: an identical map stays perfect after subsampling
    assert manifold_quality(X, X, ks=(5,), max_points=50)["continuity"][5] == pytest.approx(1.0)


def test_manifold_quality_rejects_bad_parameters():
    X = np.zeros((10, 3))
    with pytest.raises(ParameterError, match="X_low has 9"):
        manifold_quality(X, X[:9])
    with pytest.raises(ParameterError, match="k=0"):
        manifold_quality(X, X, ks=(0, 2))
    with pytest.raises(ParameterError, match="max_points=0"):
        manifold_quality(X, X, max_points=0)

# ------------------------------------------------------------------------------------ analogies


def grid_map(n_instruments, n_pitches, reps, *, dim=16, noise=1e-3, seed=0):
    """A 'perfect' map: point = instrument vector + pitch vector (+ tiny noise)."""
    rng = np.random.default_rng(seed)
    inst_vec = rng.standard_normal((n_instruments, dim))
    pitch_vec = rng.standard_normal((n_pitches, dim))
    inst = np.repeat(np.arange(n_instruments), n_pitches * reps)
    pitch = np.tile(np.repeat(np.arange(n_pitches), reps), n_instruments)
    X = inst_vec[inst] + pitch_vec[pitch] + noise * rng.standard_normal((len(inst), dim))
    names = np.array([f"inst{i}" for i in inst], dtype=object)
    return X, names, 48 + pitch


def test_analogies_on_a_perfect_map_always_win():
    X, inst, pitch = grid_map(4, 6, 5)
    out = analogies(X, inst, pitch, n=200, k=5)
    assert out["n_triples"] == 200
    for key in ("instrument", "pitch"):
        assert out[key]["win_rate"] == 1.0
        assert out[key]["mean_share"] == 1.0
    # b0 alone lands among b0's own pitch: its instrument is right, a1's pitch never wins
    assert out["instrument"]["control_win_rate"] == 1.0
    assert out["pitch"]["control_win_rate"] < 0.05
    ex = out["examples"][0]
    assert len(out["examples"]) == 5
    assert ex["a0"]["instrument"] == ex["a1"]["instrument"] != ex["b0"]["instrument"]
    assert ex["a0"]["pitch"] == ex["b0"]["pitch"] != ex["a1"]["pitch"]
    assert ex["found"] == {"instrument": ex["b0"]["instrument"], "pitch": ex["a1"]["pitch"]}
    assert inst[ex["a0"]["index"]] == ex["a0"]["instrument"]


def test_analogies_on_random_points_rarely_win():
    _, inst, pitch = grid_map(8, 10, 3)
    X = np.random.default_rng(7).standard_normal((len(inst), 3))
    out = analogies(X, inst, pitch, n=300, k=5, seed=1)
    assert out["instrument"]["win_rate"] < 0.3
    assert out["pitch"]["win_rate"] < 0.3


def test_analogies_leave_the_triple_out_of_the_neighbours():
    # Every instrument sits at one spot (pitch invisible), so q = a1 - a0 + b0 = X[b0] exactly
    # and the 4 points of b0's instrument are at distance 0. Without b0 the 3 nearest are the
    # other 3 of them: instrument share 1, and a1's pitch is exactly one of the 3.
    spots = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    inst = np.repeat(["a", "b", "c"], 4).astype(object)
    pitch = np.tile([60, 62, 64, 65], 3)
    out = analogies(spots[np.repeat(np.arange(3), 4)], inst, pitch, n=100, k=3)
    assert out["instrument"]["mean_share"] == 1.0
    assert out["pitch"]["mean_share"] == pytest.approx(1 / 3)
    assert out["pitch"]["control_mean_share"] == pytest.approx(1 / 3)


def test_analogies_draw_distinct_triples_and_at_most_all_of_them():
    # 2 instruments x 2 pitches, one point each: one triple per choice of a0, 4 in all
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    out = analogies(X, ["a", "a", "b", "b"], [1, 2, 1, 2], n=500, k=1)
    assert out["n_triples"] == 4
    triples = {(e["a0"]["index"], e["a1"]["index"], e["b0"]["index"]) for e in out["examples"]}
    assert triples == {(0, 1, 2), (1, 0, 3), (2, 3, 0), (3, 2, 1)}
    assert out["pitch"]["win_rate"] == 1.0  # the only point left is the expected one


def test_analogies_are_deterministic_and_respect_candidates():
    X, inst, pitch = grid_map(4, 6, 2)
    first = analogies(X, inst, pitch, n=50, k=3, seed=3)
    assert first == analogies(X, inst, pitch, n=50, k=3, seed=3)
    assert first["examples"] != analogies(X, inst, pitch, n=50, k=3, seed=4)["examples"]
    cand = np.flatnonzero(np.isin(inst, ["inst0", "inst1"]))
    out = analogies(X, inst, pitch, n=50, k=3, candidates=cand)
    used = {e[r]["index"] for e in out["examples"] for r in ("a0", "a1", "b0")}
    assert used <= set(cand.tolist())


def test_analogies_reject_bad_parameters():
    X, inst, pitch = grid_map(3, 3, 1)
    with pytest.raises(ParameterError, match="k=0"):
        analogies(X, inst, pitch, k=0)
    with pytest.raises(ParameterError, match="k=7"):
        analogies(X, inst, pitch, k=7)  # 9 points - 3 left out
    with pytest.raises(ParameterError, match="n=0"):
        analogies(X, inst, pitch, n=0, k=1)
    with pytest.raises(ParameterError, match="no points"):
        analogies(np.zeros((0, 2)), [], [], k=1)
    with pytest.raises(ParameterError, match="no valid analogy triple"):
        analogies(X, ["one"] * 9, pitch, k=1)  # no second instrument
    with pytest.raises(ParameterError, match="no valid analogy triple"):
        analogies(X, inst, pitch, k=1, candidates=inst == "inst0")  # no b0 among candidates
    with pytest.raises(ParameterError, match="no valid analogy triple"):
        analogies(X, inst, [None] * 9, k=1)  # nothing has both labels
    with pytest.raises(ParameterError, match="no valid analogy triple"):
        analogies(X, inst, pitch, k=1, candidates=[])

# ------------------------------------------------------------------------------------ confusion


def test_confusion_on_a_hand_written_example():
    y_true = ["a", "a", "b", "b", "b", None]
    y_pred = ["a", "b", "b", "b", "c", "a"]  # nothing is truly "c"; the None row is left out
    out = confusion(y_true, y_pred)
    assert out["labels"] == ["a", "b", "c"]
    assert out["matrix"] == [[1, 1, 0], [0, 2, 1], [0, 0, 0]]
    assert out["per_class_accuracy"] == {"a": 0.5, "b": pytest.approx(2 / 3), "c": None}
    assert out["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    given = confusion(y_true, y_pred, labels=["c", "b", "a", "d"])
    assert given["matrix"] == [[0, 0, 0, 0], [1, 2, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert given["per_class_accuracy"]["d"] is None


def test_confusion_of_one_class_is_its_one_cell_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn warns of a 1 x 1 matrix; evaluate printed it
        out = confusion(["a", "a", "a"], ["a", "a", "a"])
    assert out["matrix"] == [[3]] and out["balanced_accuracy"] == 1.0


def test_confusion_rejects_bad_inputs():
    with pytest.raises(ParameterError, match="y_pred has 1"):
        confusion(["a", "b"], ["a"])
    with pytest.raises(ParameterError, match="None"):
        confusion(["a", "b"], ["a", None])
    with pytest.raises(ParameterError, match="labelled entry"):
        confusion([None], ["a"])
    with pytest.raises(ParameterError, match="none of the true labels"):
        confusion(["a"], ["a"], labels=["x"])


# --------------------------------------------------------------------------- accuracy interval

def _files(n_files=200, frames=8, p=0.7, seed=0):
    """Outcomes that are alike within a file (each file all right or all wrong)."""
    right = np.random.default_rng(seed).random(n_files) < p
    return np.repeat(right, frames), np.repeat(np.arange(n_files), frames)


def test_the_accuracy_interval_resamples_files_not_frames():
    correct, files = _files()
    low, high = accuracy_interval(correct, files)
    assert low < correct.mean() < high
    # eight copies of each file's outcome say no more than one: the same interval
    one_each = accuracy_interval(correct[::8], files[::8])
    assert [low, high] == pytest.approx(one_each, abs=0.02)
    # taken as independent frames, the same outcomes would look far more certain
    f_low, f_high = accuracy_interval(correct, np.arange(len(correct)))
    assert f_high - f_low < 0.5 * (high - low)
    # more files, a narrower interval
    many, many_files = _files(n_files=3200)
    m_low, m_high = accuracy_interval(many, many_files)
    assert m_high - m_low < 0.5 * (high - low)


def test_the_paired_difference_resamples_the_same_files_for_both_maps():
    correct, files = _files()
    assert accuracy_interval(correct, files, against=correct) == [0.0, 0.0]
    other = correct.copy()
    other[files < 10] = True  # the second map gets ten more files right, or the same
    gain = other.mean() - correct.mean()
    assert gain > 0
    low, high = accuracy_interval(other, files, against=correct)
    assert 0 <= low <= gain <= high
    # paired, the difference is much surer than either accuracy alone
    a_low, a_high = accuracy_interval(other, files)
    assert high - low < 0.5 * (a_high - a_low)


def test_the_accuracy_interval_is_seeded_and_refuses_bad_input():
    correct, files = _files()
    assert accuracy_interval(correct, files, seed=3) == accuracy_interval(correct, files, seed=3)
    assert accuracy_interval(correct[:8], files[:8]) is None  # one file: no interval
    with pytest.raises(ParameterError, match="groups has 3 entries for 4 outcomes"):
        accuracy_interval([1, 0, 1, 1], [0, 1, 2])
    with pytest.raises(ParameterError, match="against has 2 entries"):
        accuracy_interval([1, 0, 1], [0, 1, 2], against=[1, 0])
    with pytest.raises(ParameterError, match="level=1.5"):
        accuracy_interval(correct, files, level=1.5)
    with pytest.raises(ParameterError, match="n_resamples=0"):
        accuracy_interval(correct, files, n_resamples=0)
