"""nca3.py with the plane's r.m.s. radius held at one octave, so that the plane cannot outgrow
the pitch axis; a linear head and a small MLP on the frozen hidden layer. A probe.

    python tools/probes/nca3r.py CORPUS ATLAS:labels [ATLAS:labels ...]
"""
import os
import sys
import tempfile

import numpy as np
import torch

from common import knn_scores
from pitch_plane import cache_of, corpus_classes, load
from soundatlas.atlas import Atlas
from soundatlas.pitch_axis import plane_start


def train_head(head, H, z, y, *, steps=3000, batch=1024, lr=0.003, seed=0):
    g = torch.Generator().manual_seed(seed)
    _, yi = np.unique(y.astype(str), return_inverse=True)
    Ht, zt, yt = torch.tensor(H), torch.tensor((z - 60) / 12, dtype=torch.float32), torch.tensor(yi)
    mu = Ht.mean(0)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for step in range(steps):
        idx = torch.randint(0, len(Ht), (batch,), generator=g)
        Q = head(Ht[idx] - mu)
        Q = Q - Q.mean(0)
        Q = Q / Q.pow(2).sum(1).mean().sqrt()
        X = torch.cat([Q, zt[idx, None]], 1)
        d2 = torch.cdist(X, X).pow(2)
        d2.fill_diagonal_(float("inf"))
        logp = torch.log_softmax(-d2 / 0.01, 1)  # a neighbourhood of about a tenth of an octave
        same = (yt[idx, None] == yt[None, idx]).float()
        same.fill_diagonal_(0)
        has = same.sum(1) > 0
        loss = -(torch.logsumexp(logp.masked_fill(same == 0, -float("inf")), 1)[has]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == steps - 1:
            print("step", step, "loss", round(loss.item(), 4), flush=True)
    with torch.no_grad():
        Q = head(Ht - mu)
        m = Q.mean(0)
        r = (Q - m).pow(2).sum(1).mean().sqrt()

    f_state = {"mu": mu.numpy(), "m": m.numpy(), "r": float(r)}

    def f(P, Hx, zx):
        with torch.no_grad():
            return ((head(torch.tensor(Hx) - mu) - m) / r).numpy()
    f.state = f_state
    return f


def main(corpus, targets):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    fs, P, H, z = load(corpus, cache_of(corpus))
    y = corpus_classes(corpus, fs)
    tables = []
    for t in targets:
        path, labels = t.split(":")
        tables.append((path, Atlas.open(path), labels.split(","),
                       load(path, cache_of(path))))
    from soundatlas.artifact import resolve_model
    art, _ = resolve_model(Atlas.open(corpus), "default")
    L4 = art.model.l4.weight.detach().float().numpy()
    lin = torch.nn.Linear(256, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(plane_start(P, z, L4), dtype=torch.float32))
    mlp = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.Tanh(), torch.nn.Linear(128, 2))
    for name, head in (("linear", lin), ("mlp", mlp)):
        f = train_head(head, H, z, y)
        if name == "linear":  # the plane as one affine map of the hidden layer, as an L4 holds it
            W = head.weight.detach().numpy() / f.state["r"]
            b = -(f.state["mu"] @ head.weight.detach().numpy().T + f.state["m"]) / f.state["r"]
            np.savez(os.path.join(tempfile.gettempdir(), "nca3r-linear.npz"), weight=W, bias=b)
        for path, atlas, labels, (tfs, tP, tH, tz) in tables:
            Z = np.c_[f(tP, tH, tz), (tz - 60) / 12]
            print(path, "nca3r-" + name, knn_scores(atlas, tfs, Z, labels), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
