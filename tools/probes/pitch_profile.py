"""Probe: per-sample precision at 10, as ``evaluate`` reports it, of the stored hidden layer, the
input space (each sample's mean evaluated window), the pitch profile alone and the hidden layer
(at weight 1) beside tanh(g x pitch profile) for each gain g: the similarity space of
``soundatlas.similarity`` before its weight (g = 20 there; ``--hidden-weights 0.7`` gives the
space as it ships) and the gains it was chosen among, on the tuning set.

    python tools/probes/pitch_profile.py ATLAS LABEL,LABEL,... [--gains 2,5,10,20,40]

The atlas is embedded with ``default``; the hidden layer is the timbre block of its stored
vectors (any space, less its weight); the pitch profile is computed here from the features at
each gain. `--salience R,...` also scores the profile weighed by how pitched a sound is."""
import argparse

import numpy as np

from common import sample_retrieval
from soundatlas import similarity
from soundatlas.atlas import Atlas
from soundatlas.embed import frame_energy, point_of

ap = argparse.ArgumentParser()
ap.add_argument("atlas"); ap.add_argument("labels")
ap.add_argument("--gains", default="2,5,10,20,40")
ap.add_argument("--hidden-weights", default="", help="also the hidden block scaled by w beside "
                "the shipped profile (weights of the two blocks, not the gain inside tanh), "
                "comma-separated")
ap.add_argument("--raw", default="", help="also gains c of tanh(c x profile) without unit length "
                "(the profile in log-CQT units), comma-separated")
ap.add_argument("--salience", default="", help="also the shipped space with the profile scaled "
                "by tanh(|raw| / r), |raw| the length of the profile before unit length (log-CQT "
                "units: small for noise, whose peaks average out), for each r, comma-separated")
a = ap.parse_args()

atlas = Atlas.open(a.atlas)
ids, H, X, score = sample_retrieval(atlas, a.labels.split(","))
bpo = atlas.cqt_params.bins_per_octave
records = {r.id: r for r in atlas.samples(ids.tolist())}
frames = [atlas.features(records[int(i)]).astype(np.float32) for i in ids]
means = [point_of(F, frame_energy(F, compression=atlas.cqt_params.compression)) for F in frames]
score("hidden", H)
score("input", X)
score("input pooled alike (all frames, energy-weighted)", np.stack(means))
for g in [float(x) for x in a.gains.split(",")]:
    saved, similarity.PITCH_GAIN = similarity.PITCH_GAIN, g
    try:
        P = similarity.decode(similarity.encode(np.stack([similarity.pitch_block(m, bpo)
                                                          for m in means])))
    finally:
        similarity.PITCH_GAIN = saved
    if g == similarity.PITCH_GAIN:
        score(f"profile alone, tanh({g:g} x)", P)
    score(f"hidden + tanh({g:g} x profile)", np.hstack([H, P]))


for c in [float(x) for x in a.raw.split(",") if x]:
    raw = np.stack([similarity.semitone_peaks(m, bpo) for m in means])
    P = similarity.decode(similarity.encode(np.tanh(c * raw)))
    score(f"hidden + tanh({c:g} x raw profile)", np.hstack([H, P]))

for w in [float(x) for x in a.hidden_weights.split(",") if x]:
    P = similarity.decode(similarity.encode(np.stack([similarity.pitch_block(m, bpo)
                                                      for m in means])))
    score(f"{w:g} x hidden + tanh({similarity.PITCH_GAIN:g} x profile)", np.hstack([w * H, P]))

if a.salience:
    raw = np.stack([similarity.semitone_peaks(m, bpo) for m in means])
    size = np.linalg.norm(raw, axis=1)
    print("|raw| percentiles 10/50/90:", np.round(np.percentile(size, [10, 50, 90]), 3).tolist())
    P = np.stack([similarity.pitch_block(m, bpo) for m in means])
    w = similarity.HIDDEN_WEIGHT
    for r in [float(x) for x in a.salience.split(",")]:
        S = np.tanh(size / r)[:, None]
        Z = similarity.decode(similarity.encode(np.hstack([w * H, S * P])))
        score(f"{w:g} x hidden + tanh(|raw| / {r:g}) x profile", Z)
