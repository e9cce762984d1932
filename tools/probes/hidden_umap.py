"""Probe (tuning sets only): k-NN accuracy of the shipped 3-D map, the hidden layer, and UMAP-3
of the hidden layer (+ input), on val frames, within-set protocol."""
import sys, json, time
import numpy as np, torch
from soundatlas.atlas import Atlas
from soundatlas.artifact import resolve_model
from soundatlas.evaluate import frame_set, knn_accuracy, label_of, default_labels
from soundatlas.embed import embed_many, prediction_noise, _noise_rng
from soundatlas.baselines import input_windows, make_baseline
torch.set_num_threads(2)
if len(sys.argv) != 3:
    sys.exit("usage: hidden_umap.py ATLAS LABEL,LABEL,...")
path, labels = sys.argv[1], sys.argv[2].split(",")
atlas = Atlas.open(path)
fs = frame_set(atlas, n_per_file=8, seed=0)
art, reg = resolve_model(atlas, "default")
model = art.model.eval()
recs = {r.id: r for r in atlas.samples()}
ids = sorted(set(fs.sample_ids.tolist()))
hid = {}; pts = {}
t = time.time()
B = 64
for lo in range(0, len(ids), B):
    chunk = ids[lo:lo+B]
    feats = [atlas.features(recs[i]) for i in chunk]
    out = embed_many(model, feats, noise=prediction_noise(art), rngs=[_noise_rng(recs[i].hash) for i in chunk], with_hidden=True, precision="bf16")
    for i, (z, h) in zip(chunk, out):
        pts[i], hid[i] = z, h
print("embedded", time.time()-t, file=sys.stderr)
P = np.stack([pts[s][f] for s, f in zip(fs.sample_ids, fs.frames)])
H = np.stack([hid[s][f] for s, f in zip(fs.sample_ids, fs.frames)])
X = input_windows(atlas, fs)
known = set(atlas.label_summary())
lab = {k: label_of(atlas, k, known) for k in labels}
sp = fs.split
def score(name, Z):
    row = {}
    for k in labels:
        y = np.array([lab[k].get(int(s)) for s in fs.sample_ids], dtype=object)
        r = knn_accuracy(Z[sp=="train"], y[sp=="train"], Z[sp=="valid"], y[sp=="valid"], Z[sp=="test"], y[sp=="test"])
        row[k] = round(r["test_accuracy"], 3)
    print(name, json.dumps(row), flush=True)
train = sp == "train"
score("map3", P)
score("hidden256", H)
t = time.time()
U = make_baseline("umap", seed=0).points(H, train); print("umap hidden", time.time()-t, file=sys.stderr)
score("umap3(hidden)", U)
from sklearn.decomposition import PCA
Xp = PCA(32, random_state=0).fit(X[train]).transform(X)
Hp = PCA(32, random_state=0).fit(H[train]).transform(H)
Xp /= np.sqrt((Xp[train]**2).sum(1).mean()); Hp /= np.sqrt((Hp[train]**2).sum(1).mean())
C = np.hstack([Hp, Xp]).astype(np.float32)
score("concat", C)
U2 = make_baseline("umap", seed=0).points(C, train)
score("umap3(hidden+input)", U2)
