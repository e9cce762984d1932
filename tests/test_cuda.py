"""Training on a GPU (``--device cuda``): runs only where torch sees a CUDA device (skipped in CI,
which has none; run on a GPU machine with ``python -m pytest tests/test_cuda.py``).

On a generated tone library (three folders of pitches, labelled by the manifest): a cuda run
learns, writes a model that loads and embeds on the CPU, uses bf16 where the GPU has it
(precision auto) and the library's tanh and max-pool (fused_pool auto), and resumes to the same
weights as an uninterrupted run; the fused tanh + max-pool step also runs there.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA device here", allow_module_level=True)

from conftest import make_tone_library  # noqa: E402

from soundatlas.artifact import ModelArtifact, resolve_model  # noqa: E402
from soundatlas.atlas import Atlas  # noqa: E402
from soundatlas.embed import embed_atlas  # noqa: E402
from soundatlas.indexing import index_library  # noqa: E402
from soundatlas.train import native_bf16, settings_for, train  # noqa: E402


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory):
    lib = make_tone_library(tmp_path_factory.mktemp("cuda") / "lib", n_per_folder=16)
    index_library(lib, n_jobs=1)
    return lib / ".soundatlas"


def _settings(**kw):
    kw.setdefault("iterations", 120)
    kw.setdefault("valid_every", 40)
    kw.setdefault("checkpoint_every", 40)
    kw.setdefault("batch_size", 16)
    return settings_for("fast", **kw)


def test_cuda_training_learns_and_the_model_embeds_on_the_cpu(atlas_dir):
    with Atlas.open(atlas_dir, write=True) as atlas:
        result = train(atlas, neighbourhood="instrument", settings=_settings(precision="fp32"),
                       seed=0, name="gpu", device="cuda")
        assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]
        config = json.loads((atlas.path / "models/gpu/config.json").read_text())
        assert config["precision"] == "fp32"
        artifact, reg = resolve_model(atlas, "gpu")
        assert next(artifact.model.parameters()).device.type == "cpu"
        assert embed_atlas(atlas, artifact, reg.id).n_embedded == atlas.n_samples()
        ids, points = atlas.points(reg.id)
        assert np.isfinite(points).all() and points.std(axis=0).min() > 0


def test_cuda_precision_auto_is_bf16_where_the_gpu_has_it(atlas_dir):
    with Atlas.open(atlas_dir, write=True) as atlas:
        train(atlas, neighbourhood="instrument", settings=_settings(precision="auto", iterations=40),
              seed=1, name="auto", device="cuda")
        config = json.loads((atlas.path / "models/auto/config.json").read_text())
    assert config["precision"] == ("bf16" if native_bf16("cuda") else "fp32")
    assert config["fused_pool"] is False  # auto: the library's ops are faster on a GPU


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fused_pool_matches_the_reference_layers(dtype):
    """fused_pool='on' works on a GPU too: the same output, the same gradient but at ties."""
    import torch.nn.functional as F

    from soundatlas.model import _MaxPoolTanh

    x = torch.randn(16, 20, 8, 180, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    ref_in, fused_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, fused = F.max_pool2d(torch.tanh(ref_in), (2, 1)), _MaxPoolTanh.apply(fused_in)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    fused.backward(grad)
    assert torch.equal(ref, fused)
    differs = (ref_in.grad != fused_in.grad).float().mean().item()
    assert differs == 0 if dtype == torch.float32 else differs < 0.01


def test_cuda_resume_gives_the_same_weights(atlas_dir):
    s = _settings(iterations=40, checkpoint_every=10, valid_every=20, precision="fp32")
    with Atlas.open(atlas_dir, write=True) as atlas:
        train(atlas, neighbourhood="instrument", settings=s, seed=3, name="whole", device="cuda")
        train(atlas, neighbourhood="instrument", settings=s, seed=3, name="parts", device="cuda",
              stop_after=25)
        rest = train(atlas, neighbourhood="instrument", settings=s, seed=3, name="parts",
                     device="cuda", resume=True)
        assert rest.resumed_from == 25
        a = ModelArtifact.load(atlas.path / "models/whole").model.state_dict()
        b = ModelArtifact.load(atlas.path / "models/parts").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_cuda_trains_a_pitch_axis_model_whose_height_is_the_cpus(atlas_dir):
    """`train --pitch-axis --device cuda`: the height is computed on the GPU in training and the
    model embeds on the CPU with the same height as the frames' own pitch."""
    from soundatlas.pitch_axis import frame_height

    with Atlas.open(atlas_dir, write=True) as atlas:
        result = train(atlas, neighbourhood="instrument", settings=_settings(precision="fp32"),
                       seed=0, name="gpu-pa", device="cuda", pitch_axis=True)
        assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]
        artifact, reg = resolve_model(atlas, "gpu-pa")
        assert artifact.config["architecture"]["pitch_axis"] is True
        embed_atlas(atlas, artifact, reg.id)
        rec = atlas.samples()[0]
        height = frame_height(torch.from_numpy(atlas.features(rec)), 24).numpy()
        np.testing.assert_array_equal(atlas.trajectory(reg.id, rec.id)[:, 2], height)
        x = torch.from_numpy(atlas.features(rec)[:16]).cuda()
        np.testing.assert_array_equal(frame_height(x, 24).cpu().numpy(), height[:16])
