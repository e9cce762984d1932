"""Copy a trained model from an atlas into the package as the shipped default (float16).

    python tools/ship_model.py --atlas ATLAS --model NAME --metrics EVALUATE.json \
        --made-by "the exact commands" [--name default] [--path-alias PREFIX=ALIAS ...]

The weights are stored as float16 (the paper network has 3.37 M parameters: 6.7 MB), the config
keeps everything the training recorded plus the evaluation metrics, and MADE_BY.md says how to
make it again. The package names no machine's paths: every ``--path-alias`` PREFIX in the
config's text becomes ALIAS (``--path-alias /srv/runs/gen=WORK`` turns the recorded training
command's ``--atlas /srv/runs/gen/corpus/.soundatlas`` into ``WORK/corpus/.soundatlas``), the
atlas's own path becomes ``ATLAS`` by default, and a config that still names an absolute path is
refused.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np

from soundatlas.artifact import SHIPPED_MODELS, ModelArtifact, resolve_model
from soundatlas.atlas import Atlas


ABSOLUTE = re.compile(r"(?:^|[\s=:'\"(])(/[^\s/'\"]+/[^\s'\"]*)")  # /dir/... inside a text


def replace_paths(value, aliases: dict[str, str]):
    """``value`` (a config: dicts, lists, strings, numbers) with every alias PREFIX in its
    strings replaced by its ALIAS, longest prefix first."""
    if isinstance(value, dict):
        return {k: replace_paths(v, aliases) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_paths(v, aliases) for v in value]
    if isinstance(value, str):
        for prefix in sorted(aliases, key=len, reverse=True):
            value = value.replace(prefix, aliases[prefix])
        return value
    return value


def absolute_paths(value) -> list[str]:
    """The absolute paths (``/a/b...``) the strings of a config name."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in absolute_paths(v)]
    if isinstance(value, str):
        return ABSOLUTE.findall(value)
    return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--metrics", required=True, help="JSON written by `soundatlas evaluate --output` (or --json)")
    ap.add_argument("--made-by", required=True, help="text for MADE_BY.md (commands, times)")
    ap.add_argument("--name", default="default")
    ap.add_argument("--path-alias", action="append", default=[], metavar="PREFIX=ALIAS",
                    help="write ALIAS for PREFIX in the config (repeatable; the atlas's own "
                    "path becomes ATLAS unless an alias covers it)")
    args = ap.parse_args()
    aliases = {}
    for given in args.path_alias:
        prefix, sep, alias = given.partition("=")
        if not sep or not prefix:
            raise SystemExit(f"--path-alias {given!r}: want PREFIX=ALIAS")
        aliases[prefix.rstrip("/")] = alias.rstrip("/")
    atlas_path = str(Path(args.atlas).resolve())
    if not any(atlas_path.startswith(prefix) for prefix in aliases):
        aliases[atlas_path] = "ATLAS"
    with Atlas.open(args.atlas) as atlas:
        artifact, _ = resolve_model(atlas, args.model)
    metrics = json.loads(Path(args.metrics).read_text())
    if "results" in metrics:  # `soundatlas evaluate --output`: keep this model's scores
        if args.model not in metrics["results"]:
            raise SystemExit(f"{args.metrics} has no scores for {args.model}")
        metrics = {**metrics["results"][args.model], "protocol": metrics["protocol"]}
    config = replace_paths(dict(artifact.config, metrics=metrics, trained_as=artifact.name),
                           aliases)
    left = absolute_paths(config)
    if left:
        raise SystemExit(f"the config still names machine paths ({', '.join(sorted(set(left))[:5])}"
                         "): give --path-alias PREFIX=ALIAS for them")
    out = SHIPPED_MODELS / args.name
    if out.exists():
        shutil.rmtree(out)
    ModelArtifact(args.name, config, artifact.model).save(out, dtype=np.float16)
    (out / "MADE_BY.md").write_text(args.made_by.rstrip() + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    reloaded = ModelArtifact.load(out)
    print(f"shipped {artifact.name} as {out} ({size / 2**20:.2f} MiB); "
          f"dims {reloaded.dims}, neighbourhood {config['neighbourhood']['name']}")


if __name__ == "__main__":
    main()
