"""Which 2-D plane goes best beside a measured pitch axis? (the sequel of pitch_axis.py)

They ran (2026-12-04) while ``default`` was ``generalist-s0``, the model shipped before the
pitch axis: to run them again, register that model (``git show
4bb5b54:src/soundatlas/models/default/...``) in each atlas as ``default``.

Every plane is fitted on the training corpus's evaluated frames (8 per file, seed 0) and scored
on other atlases by k-NN test accuracy of [plane, c * r * pitch / 12], r the plane's r.m.s.
radius on the corpus. A probe: it prints figures and changes nothing.

    python tools/probes/pitch_plane.py CORPUS ATLAS:labels [ATLAS:labels ...]
"""
import os
import sys
import tempfile

import numpy as np

from common import frame_points, knn_scores
from pitch_axis import frame_pitch
from soundatlas.artifact import resolve_model
from soundatlas.atlas import Atlas
from soundatlas.embed import prediction_noise
from soundatlas.evaluate import label_of


def cache_of(path):
    """Where ``load`` keeps an atlas's frames between runs (the temporary directory)."""
    return os.path.join(tempfile.gettempdir(), "pp-" + str(path).strip("/").replace("/", "_") + ".npz")


def load(path, cache=None):
    if cache and os.path.exists(cache):
        d = np.load(cache, allow_pickle=True)
        return d["fs"].item(), d["P"], d["H"], d["z"]
    atlas = Atlas.open(path)
    art, _ = resolve_model(atlas, "default")
    fs, P, H = frame_points(atlas, art.model.eval(), prediction_noise(art), with_hidden=True)
    q = atlas.cqt_params
    fmin_midi = 69 + 12 * np.log2(q.fmin / 440)
    recs = {r.id: r for r in atlas.samples()}
    z, cur, feats = np.zeros(len(fs.frames)), None, None
    for i, (s, f) in enumerate(zip(fs.sample_ids, fs.frames)):
        if s != cur:
            cur, feats = s, atlas.features(recs[int(s)])
        z[i] = frame_pitch(feats[f], q.bins_per_octave, fmin_midi)[0]
    if cache:
        np.savez(cache, fs=np.array(fs, dtype=object), P=P, H=H, z=z)
    return fs, P, H, z


def corpus_classes(path, fs):
    atlas = Atlas.open(path)
    known = set(atlas.label_summary())
    bank, ins, drum = (label_of(atlas, k, known) for k in ("bank", "instrument", "drum"))
    out = []
    for s in fs.sample_ids:
        s = int(s)
        out.append(f"d:{drum[s]}" if drum.get(s) else
                   (f"{bank.get(s)}|{ins[s]}" if ins.get(s) else None))
    return np.array(out, dtype=object)


def main(corpus, targets):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    fs, P, H, z = load(corpus, cache_of(corpus))
    y = corpus_classes(corpus, fs)
    ok = np.array([v is not None for v in y])
    print("corpus frames", len(z), "labelled", int(ok.sum()), flush=True)
    zc = 60.0
    # planes: name -> (fit on the corpus) function of (P, H, z) -> (n, 2)
    mu_p = P.mean(0)
    _, _, vt = np.linalg.svd(P - mu_p, full_matrices=False)
    A = np.c_[np.ones(len(z)), z]
    beta = np.linalg.lstsq(A, P, rcond=None)[0]
    Pr = P - A @ beta
    _, _, vtr = np.linalg.svd(Pr - Pr.mean(0), full_matrices=False)
    lda = LinearDiscriminantAnalysis(n_components=2).fit(H[ok], y[ok].astype(str))
    rng = np.random.default_rng(0)
    sub = rng.choice(np.flatnonzero(ok), 6000, replace=False)
    nca = NeighborhoodComponentsAnalysis(n_components=2, init="lda", max_iter=100, random_state=0)
    nca.fit(H[sub], y[sub].astype(str))
    print("nca fitted", flush=True)
    planes = {
        "pca2-map": lambda P, H, z: (P - mu_p) @ vt[:2].T,
        "pca2-map-no-z": lambda P, H, z: (P - np.c_[np.ones(len(z)), z] @ beta) @ vtr[:2].T,
        "lda2-hidden": lambda P, H, z: lda.transform(H),
        "nca2-hidden": lambda P, H, z: nca.transform(H),
    }
    radius = {k: float(np.sqrt(((f(P, H, z) - f(P, H, z).mean(0)) ** 2).sum(1).mean()))
              for k, f in planes.items()}
    print("radius", radius, flush=True)
    for t in targets:
        path, labels = t.split(":")
        labels = labels.split(",")
        atlas = Atlas.open(path)
        tfs, tP, tH, tz = load(path, cache_of(path))
        print(path, "map", knn_scores(atlas, tfs, tP, labels), flush=True)
        for name, f in planes.items():
            Q = f(tP, tH, tz)
            print(path, name, "alone", knn_scores(atlas, tfs, Q, labels), flush=True)
            for c in (0.5, 1, 2):
                Z = np.c_[Q, c * radius[name] * (tz - zc) / 12]
                print(path, name, c, knn_scores(atlas, tfs, Z, labels), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
