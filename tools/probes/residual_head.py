"""Probe (tuning sets only): give the shipped network a nonlinear last layer and fine-tune it
with the shipped model's own neighbourhoods on the training corpus, then score within-set k-NN
of the 3-D map on a tuning atlas.

The head is residual: point = L4(h) + L6(tanh(L5(h))) with L6 starting at zero, so the run starts
from exactly the shipped map and the nonlinear part only adds what the loss asks for. ``--freeze``
trains the head alone (L5, L6 and L4); otherwise the whole network."""
import argparse
import copy
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from common import frame_points, knn_scores
from soundatlas.artifact import resolve_model
from soundatlas.atlas import Atlas
from soundatlas.embed import prediction_noise
from soundatlas.loss import ContrastiveLoss
from soundatlas.neighbourhoods import parse_neighbourhood
from soundatlas.sampling import TrainingData, TripleSampler
from soundatlas.settings import lr_at, settings_for

SPEC = "instrument-pitch-2:bank+instrument:1,pitch-within:bank+instrument:0.5,label:drum:0.25"


class ResidualHead(nn.Module):
    def __init__(self, linear: nn.Linear, width: int):
        super().__init__()
        self.linear = linear
        self.inner = nn.Linear(linear.in_features, width)
        self.outer = nn.Linear(width, linear.out_features)
        nn.init.normal_(self.inner.weight, std=1.0 / np.sqrt(linear.in_features))
        nn.init.zeros_(self.inner.bias)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, h):
        return self.linear(h) + self.outer(torch.tanh(self.inner(h)))


ap = argparse.ArgumentParser()
ap.add_argument("corpus"); ap.add_argument("val"); ap.add_argument("labels")
ap.add_argument("--width", type=int, default=64); ap.add_argument("--freeze", action="store_true")
ap.add_argument("--lr", type=float, default=0.0002); ap.add_argument("--iterations", type=int, default=3000)
ap.add_argument("--spec", default=SPEC); ap.add_argument("--tag", default="r")
ap.add_argument("--threads", type=int, default=2); ap.add_argument("--baseline", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)

val = Atlas.open(a.val)
art, _ = resolve_model(val, "default")
noise = prediction_noise(art)
if a.baseline:
    fs, P = frame_points(val, art.model.eval(), noise)
    print("shipped", json.dumps(knn_scores(val, fs, P, a.labels.split(","))), flush=True)

corpus = Atlas.open(a.corpus)
split = corpus.splits(seed=None)
nb = parse_neighbourhood(a.spec, seed=0)
data = TrainingData.from_atlas(corpus, sorted(i for i, s in split.items() if s == "train"),
                               label_keys=nb.label_keys, missing_labels="skip")
nb.fit(data)
s = art.config["settings"]
overrides = {k: v for k, v in s.items() if k != "preset"} | {"lr": a.lr, "iterations": a.iterations}
settings = settings_for(s["preset"], **overrides)
sampler = TripleSampler(data, nb, batch_size=s["batch_size"], seed=0,
                        noise=(s["noise_mean"], s["noise_std"]), noise_rng=s["noise_rng"])
model = copy.deepcopy(art.model)
if a.width:  # --width 0: the control, the same fine-tuning of the linear head
    model.l4 = ResidualHead(model.l4, a.width)
if a.freeze:
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("l4."))
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.Adam(params, lr=a.lr)
loss_fn = ContrastiveLoss(m_p=s["m_p"], m_n=s["m_n"], origin_weight=s["origin_weight"])
model.train()
t, ema = time.time(), None
for it in range(a.iterations):
    for g in opt.param_groups:
        g["lr"] = lr_at(settings, it)
    x = torch.cat(sampler.next_batch())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model(x)
    za, zp, zn = z.float().split(len(x) // 3)
    loss = loss_fn(za, zp, zn)
    opt.zero_grad(); loss.backward(); opt.step()
    ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
    if it % 500 == 0 or it == a.iterations - 1:
        print(it, round(ema, 4), round(time.time() - t), file=sys.stderr, flush=True)
model.eval()
fs, P = frame_points(val, model, noise)
print(a.tag, vars(a), json.dumps(knn_scores(val, fs, P, a.labels.split(","))), flush=True)
