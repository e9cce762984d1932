"""Probe (tuning sets only): fine-tune the shipped model so its 3-D map reproduces a UMAP-3 of
its own hidden layer on the library's windows (label-free), then score within-set k-NN."""
import sys, json, time, copy, argparse
import numpy as np, torch
from common import frame_points, knn_scores, teacher_candidates
from soundatlas.frames import windows, add_noise
ap = argparse.ArgumentParser()
ap.add_argument("atlas"); ap.add_argument("labels")
ap.add_argument("--cands", type=int, default=50000); ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--lr", type=float, default=0.001); ap.add_argument("--nn", type=int, default=15)
ap.add_argument("--min-dist", type=float, default=0.1); ap.add_argument("--batch", type=int, default=96)
ap.add_argument("--tag", default="d")
a = ap.parse_args()
torch.set_num_threads(2); torch.manual_seed(0)
atlas, art, base, data, noise, nb, M = teacher_candidates(a.atlas, a.cands)
H = nb.embedding_.astype(np.float32); s, c = nb.cand_sample_, nb.cand_centre_
import umap, warnings
t = time.time()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    U = umap.UMAP(n_components=3, n_neighbors=a.nn, min_dist=a.min_dist, random_state=0, n_jobs=1).fit_transform(H)
print("umap", time.time() - t, file=sys.stderr, flush=True)
# orthogonal Procrustes with scale: U -> base map
Uc, Mc = U - U.mean(0), M - M.mean(0)
u, sv, vt = np.linalg.svd(Uc.T @ Mc); R = u @ vt
scale = sv.sum() / (Uc ** 2).sum()
T = (scale * Uc @ R + M.mean(0)).astype(np.float32)
print("rms move", float(np.sqrt(((T - M) ** 2).sum(1).mean())), "map rms", float(np.sqrt((Mc ** 2).sum(1).mean())), file=sys.stderr)
model = copy.deepcopy(base).train()
opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
rng = np.random.default_rng(0)
t = time.time()
for it in range(a.steps):
    idx = rng.integers(0, len(s), a.batch)
    w = windows(data, s[idx], c[idx], window=base.window)
    w = add_noise(w, rng, mean=noise[0], std=noise[1], compression=data.compression)
    z = model(torch.from_numpy(np.asarray(w, np.float32)))
    loss = ((z - torch.from_numpy(T[idx])) ** 2).sum(1).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    if it % 500 == 0:
        print(it, float(loss), time.time() - t, file=sys.stderr, flush=True)
model.eval()
fs, P = frame_points(atlas, model, noise)
print(a.tag, vars(a), json.dumps(knn_scores(atlas, fs, P, a.labels.split(","))), flush=True)
