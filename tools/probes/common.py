"""What the probes share: a model's frame points on an atlas's evaluated frames, their
within-set k-NN test accuracy (the reference protocol, as ``soundatlas evaluate`` scores it), and
the measured pitch of each sample's frames."""
import numpy as np
import torch

from soundatlas.embed import _noise_rng, embed_many
from soundatlas.evaluate import frame_set, knn_accuracy, label_of
from soundatlas.pitch_axis import frame_height


def frame_points(atlas, model, noise, *, with_hidden=False):
    """(FrameSet, points per frame[, hidden layer per frame]) of ``model`` on the 8
    energy-weighted frames per file that ``evaluate`` draws (seed 0), embedded in bf16 as
    ``embed`` does on a CPU that has it."""
    fs = frame_set(atlas, n_per_file=8, seed=0)
    recs = {r.id: r for r in atlas.samples()}
    ids = sorted(set(fs.sample_ids.tolist()))
    pts, hid = {}, {}
    with torch.no_grad():
        for lo in range(0, len(ids), 64):
            ch = ids[lo:lo + 64]
            out = embed_many(model, [atlas.features(recs[i]) for i in ch], noise=noise,
                             rngs=[_noise_rng(recs[i].hash) for i in ch],
                             with_hidden=with_hidden, precision="bf16")
            for i, o in zip(ch, out):
                pts[i], hid[i] = o if with_hidden else (o, None)
    P = np.stack([pts[s][f] for s, f in zip(fs.sample_ids, fs.frames)])
    if not with_hidden:
        return fs, P
    return fs, P, np.stack([hid[s][f] for s, f in zip(fs.sample_ids, fs.frames)])


def clip_heights(atlas, sample_ids):
    """{sample id: the measured pitch of each of its frames} (``pitch_axis.frame_height``, the
    height of a pitch-axis map: octaves from the CQT's middle bin), each sample read once."""
    recs = {r.id: r for r in atlas.samples()}
    bpo = atlas.cqt_params.bins_per_octave
    return {sid: frame_height(torch.from_numpy(np.asarray(atlas.features(recs[sid]), np.float32)),
                              bpo).numpy()
            for sid in sorted(set(int(s) for s in sample_ids))}


def middle_midi(cqt):
    """The MIDI pitch of the CQT's middle bin, where ``frame_height`` is 0 (A4, 69, with the
    default fmin of 27.5 Hz and 192 bins)."""
    return 69 + 12 * np.log2(cqt.fmin * 2 ** ((cqt.n_bins // 2) / cqt.bins_per_octave) / 440)


def knn_scores(atlas, fs, Z, labels):
    """{label: k-NN test accuracy} of the frame points ``Z``, fitted on the training frames, k
    chosen on the validation frames."""
    known, sp, row = set(atlas.label_summary()), fs.split, {}
    for key in labels:
        lab = label_of(atlas, key, known)
        y = np.array([lab.get(int(s)) for s in fs.sample_ids], dtype=object)
        r = knn_accuracy(Z[sp == "train"], y[sp == "train"], Z[sp == "valid"], y[sp == "valid"],
                         Z[sp == "test"], y[sp == "test"])
        row[key] = round(r["test_accuracy"], 3)
    return row


def teacher_candidates(path, n_candidates):
    """The shipped model on an atlas's training windows, as ``adapt``'s teacher sees them.

    Returns (atlas, artifact, base network, training data, input noise, TeacherKNN fitted on
    up to ``n_candidates`` windows by energy (its ``embedding_`` is the hidden layer's PCA-64,
    ``positives_`` each window's 10 nearest there), the base map's point of every candidate)."""
    import sys
    import time

    from soundatlas.artifact import resolve_model
    from soundatlas.atlas import Atlas
    from soundatlas.embed import prediction_noise
    from soundatlas.frames import TrainingData, windows
    from soundatlas.neighbourhoods.knn import TeacherKNN, TeacherMap

    atlas = Atlas.open(path)
    art, _ = resolve_model(atlas, "default")
    base = art.model.eval()
    split = atlas.splits(seed=None)
    data = TrainingData.from_atlas(atlas, sorted(i for i, s in split.items() if s == "train"))
    noise = prediction_noise(art)
    t = time.time()
    nb = TeacherKNN(n_candidates=n_candidates, n_components=64, k=10, far=200)
    nb.set_teacher(base, noise=noise)
    nb.fit(data)
    print("teacher hidden", nb.embedding_.shape, time.time() - t, file=sys.stderr, flush=True)
    nm = TeacherMap(n_candidates=n_candidates, n_components=3, k=10, far=200)
    nm.set_teacher(base, noise=noise)
    nm.fit(data)  # the same seed draws the same candidates
    s, c = nb.cand_sample_, nb.cand_centre_
    assert (nm.cand_sample_ == s).all() and (nm.cand_centre_ == c).all()
    M = nm._represent(windows(data, s, c, window=base.window))
    return atlas, art, base, data, noise, nb, M


def sample_retrieval(atlas, label_keys):
    """What the nearest-sounds probes share, on the samples ``evaluate`` draws (8 frames each,
    seed 0): (sample ids, their hidden-layer vectors under ``default`` (the timbre block of the
    stored similarity vectors, of any space, less its weight), the input space (each sample's
    mean evaluated window), ``score(name, Z)``: prints per-sample P@10 of ``Z`` per label, test
    samples querying all, as ``evaluate`` reports it)."""
    import json

    from soundatlas import similarity
    from soundatlas.artifact import resolve_model
    from soundatlas.baselines import input_windows
    from soundatlas.evaluate import _retrieval, _test_samples, sample_points

    _, rec = resolve_model(atlas, "default")
    fs = frame_set(atlas, n_per_file=8, seed=0)
    ids, X = sample_points(input_windows(atlas, fs), fs)
    have, codes = atlas.similarity_vectors(rec.id)
    space = atlas.similarity_space(rec.id)
    # the hidden layer's activations, whatever the block's weight in the stored space
    H = similarity.decode(similarity.timbre(codes[np.searchsorted(have, ids)], space)) / \
        np.float32(similarity.hidden_weight(space))
    test, known = _test_samples(ids, fs), set(atlas.label_summary())
    labels = {k: np.array([label_of(atlas, k, known).get(int(i)) for i in ids], dtype=object)
              for k in label_keys}

    def score(name, Z):
        r = _retrieval(np.ascontiguousarray(Z, dtype=np.float32), test, labels)
        print(name, json.dumps({k: round(v["precision_at_k"], 3) for k, v in r.items()}),
              flush=True)

    return ids, H, X, score
