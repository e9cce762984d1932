"""Prototype (trained on the corpus, scored on the tuning set val only): a D-dim similarity head
on the shipped network's frozen convolutions (L2 output, 12960 numbers -> D, linear), trained
with label neighbourhoods; per-sample vector = energy-weighted mean of the frames' head outputs;
per-sample P@10 on val beside the hidden layer's and the input's (mean log-CQT)."""
import sys, json, time, argparse
import numpy as np, torch
from soundatlas.atlas import Atlas
from soundatlas.artifact import resolve_model
from soundatlas.embed import prediction_noise, _noise_rng, frame_energy, point_of
from soundatlas.frames import TrainingData
from soundatlas.sampling import TripleSampler, add_noise
from soundatlas.neighbourhoods import parse_neighbourhood
from soundatlas.loss import ContrastiveLoss
ap = argparse.ArgumentParser()
ap.add_argument("--corpus", required=True, help="the training corpus atlas (tools/generalist.sh WORK/corpus)")
ap.add_argument("--val", required=True, help="the tuning atlas (never the held-out bank)")
ap.add_argument("-n", default="instrument-pitch:bank+instrument:1,pitch:0.5,label:instrument:0.5,label:drum:0.5,label:drum_class:0.5")
ap.add_argument("--dims", type=int, default=32); ap.add_argument("--steps", type=int, default=4000)
ap.add_argument("--lr", type=float, default=1e-3); ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--tag", default="h"); ap.add_argument("--from-l3", action="store_true"); ap.add_argument("--probe-only", action="store_true")
a = ap.parse_args()
torch.set_num_threads(2); torch.manual_seed(0)
art, _ = resolve_model(Atlas.open(a.val), "default")
net = art.model.eval().requires_grad_(False)
noise = prediction_noise(art)
def trunk(x):  # (B, window, bins) -> (B, 12960): what L3 reads, from the network's own forward
    seen = []
    hook = net.l3.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        net(x)
    finally:
        hook.remove()
    return seen[0]
head = torch.nn.Linear(12960, a.dims)
torch.nn.init.normal_(head.weight, std=0.01); torch.nn.init.zeros_(head.bias)
if a.from_l3:  # nonlinear head: a trainable copy of L3 (starts as the hidden layer) -> D
    import copy
    l3c = copy.deepcopy(net.l3).requires_grad_(True); out = torch.nn.Linear(256, a.dims)
    torch.nn.init.normal_(out.weight, std=0.1); torch.nn.init.zeros_(out.bias)
    head = torch.nn.Sequential(l3c, torch.nn.Tanh(), out)
def sample_vectors(atlas, fn):
    """Per sample: energy-weighted mean over all its frames of fn(windows)."""
    recs = list(atlas.samples()); out = {}
    W = net.window; before = W // 2
    for r in recs:
        F = atlas.features(r)
        P = np.pad(F.astype(np.float32), ((before, W - 1 - before), (0, 0)))
        P = add_noise(P, _noise_rng(r.hash), mean=noise[0], std=noise[1], compression=50.0)
        win = np.lib.stride_tricks.sliding_window_view(P, (W, P.shape[1]))[:, 0]
        with torch.no_grad():
            v = fn(torch.from_numpy(np.ascontiguousarray(win)))
        out[r.id] = point_of(v.numpy(), frame_energy(F))
    return out
def p10(atlas, vecs, labels):
    """Per-sample P@10 as ``evaluate`` reports it: the labelled test samples query all others."""
    from soundatlas.evaluate import _retrieval, label_of
    split, known = atlas.splits(), set(atlas.label_summary())
    ids = np.array(sorted(vecs)); X = np.stack([vecs[i] for i in ids])
    test = np.array([split[i] == "test" for i in ids])
    y = {k: np.array([label_of(atlas, k, known).get(int(i)) for i in ids], dtype=object)
         for k in labels}
    return {k: round(r["precision_at_k"], 3) for k, r in _retrieval(X, test, y, k=10).items()}
val = Atlas.open(a.val); labels = ["instrument", "pitch", "drum_class"]
if a.probe_only:
    t = time.time()
    hid = lambda x: torch.tanh(net.l3(trunk(x)))
    print("hidden", p10(val, sample_vectors(val, hid), labels), time.time() - t, flush=True)
    print("input", p10(val, sample_vectors(val, lambda x: x[:, net.window // 2]), labels), flush=True)
    sys.exit()
corpus = Atlas.open(a.corpus)
nb = parse_neighbourhood(a.n)
split = corpus.splits(seed=None)
train_ids = sorted(i for i, s in split.items() if s == "train")
data = TrainingData.from_atlas(corpus, train_ids, label_keys=nb.label_keys, missing_labels="skip")
nb.fit(data)
sampler = TripleSampler(data, nb, batch_size=a.batch, seed=0, noise=noise, noise_rng="torch")
loss_fn = ContrastiveLoss(m_p=0.0, m_n=1.0, origin_weight=0.0)
opt = torch.optim.Adam(head.parameters(), lr=a.lr)
t = time.time(); ema = None
for it in range(a.steps):
    x, p, n = sampler.next_batch()
    with torch.no_grad():
        f = trunk(torch.cat([x, p, n]))
    z = head(f); za, zp, zn = z.split(len(x))
    loss = loss_fn(za, zp, zn)
    opt.zero_grad(); loss.backward(); opt.step()
    ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
    if it % 500 == 0:
        print(it, round(ema, 4), round(time.time() - t), file=sys.stderr, flush=True)
print(a.tag, vars(a), "head", p10(val, sample_vectors(val, lambda x: head(trunk(x))), labels), flush=True)
