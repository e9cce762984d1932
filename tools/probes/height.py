"""RULE 4's height axis: harmonic-sum pitch where a frame is harmonic, else its log-CQT centroid;
the harmonicity threshold fitted on the training corpus alone. nca3r's heads retrained with it.
A probe.

    python tools/probes/height.py CORPUS ATLAS:labels [ATLAS:labels ...]
"""
import sys

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d

from common import knn_scores
from nca3r import train_head
from pitch_axis import HARMONICS
from pitch_plane import cache_of, corpus_classes, load
from soundatlas.atlas import Atlas
from soundatlas.pitch_axis import plane_start


def frame_stats(path, fs):
    """(harmonic-sum pitch, harmonicity, centroid), MIDI units, for every evaluated frame."""
    atlas = Atlas.open(path)
    q = atlas.cqt_params
    fmin_midi = 69 + 12 * np.log2(q.fmin / 440)
    bpo = q.bins_per_octave
    offs = np.round(bpo * np.log2(HARMONICS)).astype(int)
    recs = {r.id: r for r in atlas.samples()}
    out = np.zeros((len(fs.frames), 3))
    cur = None
    for i, (s, f) in enumerate(zip(fs.sample_ids, fs.frames)):
        if s != cur:
            cur, feats = s, atlas.features(recs[int(s)]).astype(np.float64)
        c = feats[f]
        flat = np.maximum(c - uniform_filter1d(c, size=bpo, mode="nearest"), 0)
        n = len(flat)
        sal = np.zeros(n)
        for h, o in zip(HARMONICS, offs):
            sal[: n - o] += flat[o:] / h ** 0.5
        b = int(np.argmax(sal))
        cen = float((c * np.arange(n)).sum() / max(c.sum(), 1e-9))
        out[i] = (fmin_midi + 12 * b / bpo, sal[b] / max(flat.sum(), 1e-9), fmin_midi + 12 * cen / bpo)
    return out


def main(corpus, targets):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    fs, P, H, z = load(corpus, cache_of(corpus))
    y = corpus_classes(corpus, fs)
    st = frame_stats(corpus, fs)
    drum = np.array([str(v).startswith("d:") for v in y])
    best = (0, None)
    for T in np.quantile(st[:, 1], np.linspace(0.01, 0.99, 197)):
        bal = ((st[drum, 1] < T).mean() + (st[~drum, 1] >= T).mean()) / 2
        best = max(best, (bal, T), key=lambda x: x[0])
    T = best[1]
    print("T", round(float(T), 4), "balanced accuracy", round(best[0], 3), flush=True)

    def height(st):
        return np.where(st[:, 1] >= T, st[:, 0], st[:, 2])
    hc = height(st)
    tables = []
    for t in targets:
        path, labels = t.split(":")
        tfs, tP, tH, _ = load(path, cache_of(path))
        tables.append((path, Atlas.open(path), labels.split(","), tP, tH, tfs, height(frame_stats(path, tfs))))
    from soundatlas.artifact import resolve_model
    art, _ = resolve_model(Atlas.open(corpus), "default")
    L4 = art.model.l4.weight.detach().float().numpy()
    lin = torch.nn.Linear(256, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(plane_start(P, hc, L4), dtype=torch.float32))
    mlp = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.Tanh(), torch.nn.Linear(128, 2))
    for name, head in (("linear", lin), ("mlp", mlp)):
        f = train_head(head, H, hc, y)
        for path, atlas, labels, tP, tH, tfs, th in tables:
            Z = np.c_[f(tP, tH, th), (th - 60) / 12]
            print(path, "height-" + name, knn_scores(atlas, tfs, Z, labels), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
