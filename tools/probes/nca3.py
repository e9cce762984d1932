"""A plane learned beside the measured pitch axis: a linear map W of the hidden layer trained with
an NCA loss in 3-D, [W h, z / 12] (the pitch axis fixed, in octaves), on the training corpus's
evaluated frames, scored on other atlases by k-NN (pitch_plane.py's setup). A probe.

    python tools/probes/nca3.py CORPUS ATLAS:labels [ATLAS:labels ...]
"""
import sys

import numpy as np
import torch

from common import knn_scores
from pitch_plane import cache_of, corpus_classes, load
from soundatlas.atlas import Atlas
from soundatlas.pitch_axis import plane_start


def train_plane(H, z, y, W0, *, steps=3000, batch=1024, lr=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    _, yi = np.unique(y.astype(str), return_inverse=True)
    Ht, zt, yt = torch.tensor(H), torch.tensor((z - 60) / 12, dtype=torch.float32), torch.tensor(yi)
    mu = Ht.mean(0)
    W = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float32))
    opt = torch.optim.Adam([W], lr=lr)
    for step in range(steps):
        idx = torch.randint(0, len(Ht), (batch,), generator=g)
        X = torch.cat([(Ht[idx] - mu) @ W.T, zt[idx, None]], 1)
        d2 = torch.cdist(X, X).pow(2)
        d2.fill_diagonal_(float("inf"))
        logp = torch.log_softmax(-d2, 1)
        same = (yt[idx, None] == yt[None, idx]).float()
        same.fill_diagonal_(0)
        has = same.sum(1) > 0
        loss = -(torch.logsumexp(logp.masked_fill(same == 0, -float("inf")), 1)[has]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print("step", step, "loss", round(loss.item(), 4), "|W|", round(W.norm().item(), 3), flush=True)
    Wn = W.detach().numpy()
    return lambda P, H, z: (H - mu.numpy()) @ Wn.T, Wn


def main(corpus, targets):
    from sklearn.neighbors import NeighborhoodComponentsAnalysis
    torch.set_num_threads(2)
    fs, P, H, z = load(corpus, cache_of(corpus))
    y = corpus_classes(corpus, fs)
    rng = np.random.default_rng(0)
    sub = rng.choice(len(y), 6000, replace=False)
    nca = NeighborhoodComponentsAnalysis(n_components=2, init="lda", max_iter=100, random_state=0)
    nca.fit(H[sub], y[sub].astype(str))
    from soundatlas.artifact import resolve_model
    art, _ = resolve_model(Atlas.open(corpus), "default")
    L4 = art.model.l4.weight.detach().float().numpy()  # (3, 256)
    W_pca = plane_start(P, z, L4)  # the plane pca2-map-no-z as a map of the hidden layer
    W_nca = nca.components_
    # start where a 3-D neighbourhood is about one octave wide: scale each init to unit r.m.s.
    hc = H - H.mean(0)
    inits = {}
    for name, W0 in (("nca", W_nca), ("pca", W_pca)):
        r = np.sqrt(((hc @ W0.T) ** 2).sum(1).mean())
        inits[name] = W0 / r
    tables = []
    for t in targets:
        path, labels = t.split(":")
        tables.append((path, Atlas.open(path), labels.split(","), load(path, cache_of(path))))
    for name, W0 in inits.items():
        f, Wn = train_plane(H, z, y, W0)
        for path, atlas, labels, (tfs, tP, tH, tz) in tables:
            Z = np.c_[f(tP, tH, tz), (tz - 60) / 12]
            print(path, "nca3-" + name, knn_scores(atlas, tfs, Z, labels), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
