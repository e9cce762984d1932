"""Probe (tuning sets only): k-NN accuracy of the shipped 3-D map, the hidden layer, and UMAP-3
of the hidden layer (+ input), on val frames, within-set protocol."""
import sys, json, time
import numpy as np, torch
from soundatlas.atlas import Atlas
from soundatlas.artifact import resolve_model
from soundatlas.embed import prediction_noise
from common import frame_points, knn_scores
from soundatlas.baselines import input_windows, make_baseline
torch.set_num_threads(2)
if len(sys.argv) != 3:
    sys.exit("usage: hidden_umap.py ATLAS LABEL,LABEL,...")
path, labels = sys.argv[1], sys.argv[2].split(",")
atlas = Atlas.open(path)
art, _ = resolve_model(atlas, "default")
model = art.model.eval()
fs, P, H = frame_points(atlas, model, prediction_noise(art), with_hidden=True)
X = input_windows(atlas, fs)
sp = fs.split
def score(name, Z):
    print(name, json.dumps(knn_scores(atlas, fs, Z, labels)), flush=True)
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
