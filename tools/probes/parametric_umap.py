"""Probe (tuning sets only): fine-tune the shipped model with a parametric-UMAP loss (attraction
to the k nearest windows in its own hidden layer, in-batch repulsion, UMAP's curve for min_dist)
on the library's windows (label-free), then score within-set k-NN on the 3-D map."""
import sys, json, time, copy, argparse
import numpy as np, torch
from common import frame_points, knn_scores, teacher_candidates
from soundatlas.frames import windows, add_noise
ap = argparse.ArgumentParser()
ap.add_argument("atlas"); ap.add_argument("labels")
ap.add_argument("--cands", type=int, default=50000); ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--lr", type=float, default=0.001); ap.add_argument("--nn", type=int, default=15)
ap.add_argument("--min-dist", type=float, default=0.1); ap.add_argument("--batch", type=int, default=96)
ap.add_argument("--tag", default="d"); ap.add_argument("--scale", type=float, default=5.0); ap.add_argument("--neg", type=int, default=5); ap.add_argument("--anchor", type=float, default=0.0)
a = ap.parse_args()
torch.set_num_threads(2); torch.manual_seed(0)
atlas, art, base, data, noise, nb, M = teacher_candidates(a.atlas, a.cands)
H = nb.embedding_.astype(np.float32); s, c = nb.cand_sample_, nb.cand_centre_
model = copy.deepcopy(base).train()
opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
rng = np.random.default_rng(0)
from umap.umap_ import find_ab_params
ua, ub = find_ab_params(1.0, a.min_dist)
P_pos = nb.positives_
Mt = torch.from_numpy(M.astype(np.float32))
t = time.time(); B = a.batch // 2
def q_of(d2):
    return 1.0 / (1.0 + ua * d2.clamp_min(1e-12) ** ub)
for it in range(a.steps):
    i = rng.integers(0, len(s), B); j = P_pos[i, rng.integers(0, P_pos.shape[1], B)]
    idx = np.concatenate([i, j])
    w = windows(data, s[idx], c[idx], window=base.window)
    w = add_noise(w, rng, mean=noise[0], std=noise[1], compression=data.compression)
    z = model(torch.from_numpy(np.asarray(w, np.float32)))
    zi, zj = (a.scale * z).split(B)
    att = -torch.log(q_of(((zi - zj) ** 2).sum(1)).clamp_min(1e-4)).mean()
    rep = 0.0
    for r in range(a.neg):
        perm = torch.from_numpy(rng.permutation(B))
        rep = rep - torch.log((1 - q_of(((zi - zj[perm]) ** 2).sum(1))).clamp_min(1e-4)).mean()
    loss = att + rep
    if a.anchor > 0:
        loss = loss + a.anchor * ((z - Mt[idx]) ** 2).sum(1).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    if it % 500 == 0:
        print(it, float(att), float(rep), time.time() - t, file=sys.stderr, flush=True)
model.eval()
fs, P = frame_points(atlas, model, noise)
print(a.tag, vars(a), json.dumps(knn_scores(atlas, fs, P, a.labels.split(","))), flush=True)
