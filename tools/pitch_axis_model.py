"""Give a trained model a measured pitch axis: its network, a learned timbre plane, a height.

    python tools/pitch_axis_model.py --atlas WORK/corpus/.soundatlas --base generalist-s0 \
        --name generalist-s0-pa [--classes drum,bank+instrument,instrument] [--also ATLAS]
        [--steps 3000] [--seed 0]

The new model keeps the base model's L0-L3 (so its hidden layer, and the similarity space made
from it, are the base model's) and replaces L4 by a plane fitted with
``soundatlas.pitch_axis.fit_plane`` on the atlas's evaluated frames (8 per file, seed 0, as
``evaluate`` draws them). A frame's class is its file's value of the first label of ``--classes``
the file has; the default, ``drum,bank+instrument,instrument``, is "same GM drum" and "same
instrument, same maker" (the labels of the training corpus of ``tools/generalist.sh``; "same
instrument" where a file names no maker), and ``drum,instrument`` gathers an instrument across
makers. ``--also`` adds the labelled frames of other atlases (other renders of training banks) to
the fit. The height is each frame's measured pitch (``pitch_axis.frame_height``). The fit
starts from the base map's two main directions beside the height (``plane_start``), or from the
base's own plane when the base already has a pitch axis. The result is
registered in the atlas as NAME, like a model ``soundatlas train`` makes;
``tools/ship_model.py`` ships it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch

from soundatlas.artifact import ModelArtifact, resolve_model
from soundatlas.atlas import Atlas
from soundatlas.embed import _noise_rng, check_features, embed_many, prediction_noise
from soundatlas.errors import SoundAtlasError
from soundatlas.evaluate import frame_set, label_of
from soundatlas.model import build_model
from soundatlas.pitch_axis import fit_plane, frame_height, plane_start


def frames_of(atlas, artifact, class_keys=("drum", "bank+instrument", "instrument")):
    """(base points, hidden layer, height, class) of the atlas's evaluated frames that have a
    class: the first of ``class_keys`` (labels, or ``A+B`` pairs) their file has. An atlas of
    other features than the model's is refused (``embed.check_features``)."""
    check_features(atlas, artifact)
    fs = frame_set(atlas, n_per_file=8, seed=0)
    recs = {r.id: r for r in atlas.samples()}
    ids = sorted(set(fs.sample_ids.tolist()))
    noise, model = prediction_noise(artifact), artifact.model.eval()
    bpo = artifact.cqt.bins_per_octave
    per = {}
    with torch.no_grad():
        for lo in range(0, len(ids), 64):
            chunk = ids[lo:lo + 64]
            feats = [atlas.features(recs[i]) for i in chunk]
            rngs = [_noise_rng(recs[i].hash) for i in chunk]
            out = embed_many(model, feats, noise=noise, rngs=rngs, with_hidden=True,
                             precision="bf16")
            for i, f, (p, h) in zip(chunk, feats, out):
                per[i] = (p, h, frame_height(torch.from_numpy(np.asarray(f)), bpo).numpy())
            print(f"\rframes of {min(lo + 64, len(ids))}/{len(ids)} files", end="", file=sys.stderr)
    print(file=sys.stderr)
    rows = [(per[s][0][f], per[s][1][f], per[s][2][f]) for s, f in zip(fs.sample_ids, fs.frames)]
    known = set(atlas.label_summary())
    values = [(key, label_of(atlas, key, known)) for key in class_keys]
    classes = np.array([next((f"{key}:{v[s]}" for key, v in values if v.get(s)), "")
                        for s in map(int, fs.sample_ids)])
    keep = classes != ""
    P, H, Z = (np.stack([r[k] for r in rows]) for k in range(3))
    return P[keep], H[keep], Z[keep], classes[keep]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--atlas", required=True, help="the training corpus's atlas")
    ap.add_argument("--base", required=True, help="the model whose network is kept")
    ap.add_argument("--name", required=True, help="the new model's name in the atlas")
    ap.add_argument("--classes", default="drum,bank+instrument,instrument",
                    help="label keys, in order: a frame's class is the first its file has")
    ap.add_argument("--also", action="append", default=[], metavar="ATLAS",
                    help="another atlas whose labelled frames join the fit (repeatable)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    t0 = time.time()
    class_keys = [k.strip() for k in args.classes.split(",") if k.strip()]
    parts = []
    with Atlas.open(args.atlas) as atlas:
        base, _ = resolve_model(atlas, args.base)
        parts.append(frames_of(atlas, base, class_keys))
    for extra in args.also:
        with Atlas.open(extra) as other:
            try:
                parts.append(frames_of(other, base, class_keys))
            except SoundAtlasError as exc:
                raise SystemExit(f"--also {extra}: {exc}") from None
    P, H, Z, classes = (np.concatenate([part[k] for part in parts]) for k in range(4))
    if len(set(classes)) < 2:
        raise SystemExit(f"--classes {args.classes}: fewer than two classes among the labelled "
                         f"frames of {', '.join([args.atlas, *args.also])}")
    print(f"{len(P)} frames, {len(set(classes))} classes", file=sys.stderr)
    l4 = base.model.l4.weight.detach().float().numpy()
    # a base that already has a pitch axis has a plane: the new fit starts from it (its 3-D
    # points hold the height, so the base map's directions have no meaning beside it)
    start = l4 if base.model.pitch_axis else plane_start(P, Z, l4)
    weight, bias = fit_plane(
        H, Z, classes, start, steps=args.steps, seed=args.seed,
        progress=lambda step, loss: print(f"\rstep {step}/{args.steps} loss {loss:.3f}",
                                          end="", file=sys.stderr))
    print(file=sys.stderr)
    # registering writes no array file: like `train`, it may run beside an index or embed
    with Atlas.open(args.atlas, write=True, tidy=False) as atlas:
        params = dict(base.model.get_params(), pitch_axis=True,
                      bins_per_octave=base.cqt.bins_per_octave)
        model = build_model(**params)
        state = {k: v for k, v in base.model.state_dict().items() if not k.startswith("l4.")}
        model.load_state_dict(state, strict=False)
        with torch.no_grad():
            model.l4.weight.copy_(torch.from_numpy(weight))
            model.l4.bias.copy_(torch.from_numpy(bias))
        model.eval()
        config = dict(base.config)
        for key in ("metrics", "trained_as", "name", "weights_dtype"):
            config.pop(key, None)
        config["architecture"] = model.get_params()
        config["pitch_axis"] = {
            "base": base.name, "plane": "fit_plane", "steps": args.steps, "seed": args.seed,
            "frames": int(len(P)), "classes": ", ".join(class_keys),
            "also": list(args.also),
            "command": "python tools/pitch_axis_model.py " + shlex.join(sys.argv[1:] if argv is None else argv),
            "seconds": round(time.time() - t0, 1)}
        if base.config.get("pitch_axis"):  # the base's own fit, so the lineage stays whole
            config["pitch_axis"]["base_fit"] = base.config["pitch_axis"]
        out = atlas.path / "models" / args.name
        ModelArtifact(args.name, config, model).save(out)
        atlas.register_model(args.name, str(out.relative_to(atlas.path)), config)
    print(f"registered {args.name} ({out}); {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
