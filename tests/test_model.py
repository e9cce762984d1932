"""The paper network: shape, parameter count, initialisation, fully convolutional embedding,
persistence as plain arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from soundatlas.errors import ParameterError
from soundatlas.model import (
    ARCHITECTURES,
    PaperNet,
    build_model,
    init_weights,
    load_arrays,
    state_to_arrays,
)


def seeded(seed=0, std=0.01, **params) -> PaperNet:
    model = PaperNet(**params)
    return init_weights(model, std=std, generator=torch.Generator().manual_seed(seed))


def lively(seed=0, **params) -> PaperNet:
    """Weights large enough that every layer's output varies (tanh neither linear nor saturated)."""
    model = seeded(seed, std=0.05, **params)
    with torch.no_grad():
        model.l3.weight.mul_(0.2)
        model.l4.weight.mul_(2.0)
        for layer in (model.l0, model.l1, model.l2, model.l3, model.l4):
            layer.bias.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(seed + 1))
    return model.eval()


def features(n_time, n_bins=192, seed=0, batch=None) -> torch.Tensor:
    """Log-CQT-like frames: non-negative, a few units large."""
    g = torch.Generator().manual_seed(seed)
    shape = (n_time, n_bins) if batch is None else (batch, n_time, n_bins)
    return torch.rand(shape, generator=g) * 4.0


def naive_windows(frames: torch.Tensor, window: int) -> torch.Tensor:
    """The zero-padded window centred at each frame, one frame copy at a time."""
    n_time, n_bins = frames.shape
    out = torch.zeros(n_time, window, n_bins)
    for f in range(n_time):
        for i in range(window):
            src = f - window // 2 + i
            if 0 <= src < n_time:
                out[f, i] = frames[src]
    return out


def test_paper_parameter_count():
    # by hand: L0 20*1*3*13 + 20, L1 40*20*3*11 + 40, L2 80*40*1*9 + 80,
    # L3 (80*1*162)*256 + 256, L4 256*3 + 3
    expected = (780 + 20) + (26400 + 40) + (28800 + 80) + (12960 * 256 + 256) + (768 + 3)
    assert expected == 3_374_907
    model = PaperNet()
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.feature_shape == (80, 1, 162)
    assert model.l3.in_features == 12960
    assert [tuple(layer.weight.shape) for layer in (model.l0, model.l1, model.l2)] == [
        (20, 1, 3, 13), (40, 20, 3, 11), (80, 40, 1, 9)]


def test_forward_shapes_and_other_sizes():
    model = seeded()
    assert model(features(10, batch=5)).shape == (5, 3)
    other = seeded(n_bins=84, window=20, dims=2)
    assert other.feature_shape == (80, 3, 54)  # 20 -> 18 -> 9 -> 7 -> 3 in time
    assert other(features(20, n_bins=84, batch=2)).shape == (2, 2)


@pytest.mark.parametrize("params", [
    {"window": 9}, {"n_bins": 30}, {"dims": 0}, {"window": 10.0}, {"dims": True},
])
def test_bad_sizes_raise(params):
    with pytest.raises(ParameterError):
        PaperNet(**params)


@pytest.mark.parametrize("params", [
    {"dims": 3_000_000}, {"dims": 22_000_000, "pitch_axis": True}, {"n_bins": 10**9},
    {"window": 10**9, "standardize": True},
])
def test_a_network_too_large_to_build_is_refused_before_it_is_made(params):
    """A model's config.json with a huge size (a fuzzed one, dims in the millions, took 22 GB
    and was killed for memory): refused by its weight count, before anything is allocated."""
    with pytest.raises(ParameterError, match="more than the 100,000,000 soundatlas builds"):
        PaperNet(**params)
    assert PaperNet(dims=1024).dims == 1024  # the largest train --dims still builds


def test_forward_rejects_wrong_window_shape():
    with pytest.raises(ParameterError, match="expected"):
        seeded()(torch.zeros(2, 12, 192))


def test_init_weights_is_seeded_and_paper_scaled():
    a, b, c = seeded(1), seeded(1), seeded(2)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        if name.endswith("bias"):
            assert not pa.any()
        else:
            assert not torch.equal(pa, pc)
    channels_last = init_weights(PaperNet().to(memory_format=torch.channels_last),
                                 generator=torch.Generator().manual_seed(1))
    for pa, pb in zip(a.parameters(), channels_last.parameters()):
        assert torch.equal(pa, pb)
    w = a.l3.weight
    w = w.detach()
    assert abs(float(w.mean())) < 1e-4 and abs(float(w.std()) - 0.01) < 1e-4
    with pytest.raises(ParameterError):
        init_weights(a, std=-1.0)


@pytest.mark.parametrize("n_time", [1, 3, 10, 57])
def test_embed_frames_equals_forward_on_padded_windows(n_time):
    model = lively()
    frames = features(n_time, seed=n_time)
    with torch.inference_mode():
        expected = model(naive_windows(frames, 10))
        got = model.embed_frames(frames)
    assert got.shape == (n_time, 3)
    assert float(expected.std(0).max() if n_time > 1 else expected.abs().max()) > 0.05
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_frames", [1, 4, 7, 100])
def test_embed_frames_chunked_and_batched(chunk_frames):
    model = lively(seed=3)
    frames = features(23, seed=1, batch=2)
    with torch.inference_mode():
        expected = torch.stack([model(naive_windows(f, 10)) for f in frames])
        got = model.embed_frames(frames, chunk_frames=chunk_frames)
    assert got.shape == (2, 23, 3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("window", [13, 20])  # odd pool inputs (floor) and a wider L3 kernel
def test_embed_frames_other_window_lengths(window):
    model = lively(seed=5, n_bins=64, window=window)
    frames = features(31, n_bins=64, seed=2)
    with torch.inference_mode():
        expected = model(naive_windows(frames, window))
        got = model.embed_frames(frames, chunk_frames=9)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_embed_frames_pad_value():
    model = lively()
    frames = features(6)
    windows = naive_windows(frames, 10)
    for f in range(6):  # fill the padding the long way
        for i in range(10):
            if not 0 <= f - 5 + i < 6:
                windows[f, i] = 1.5
    with torch.inference_mode():
        torch.testing.assert_close(model.embed_frames(frames, pad_value=1.5), model(windows),
                                   atol=1e-5, rtol=0)


def test_embed_frames_shares_weights_and_checks_input():
    model = lively()
    n_params = sum(p.numel() for p in model.parameters())
    frames = features(12)
    with torch.inference_mode():
        before = model.embed_frames(frames)
    with torch.no_grad():
        model.l3.weight.mul_(1.5)  # a trained L3 must be used as is, without conversion
    with torch.inference_mode():
        after = model.embed_frames(frames)
        torch.testing.assert_close(after, model(naive_windows(frames, 10)), atol=1e-5, rtol=0)
    assert not torch.allclose(before, after)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert model.embed_frames(torch.zeros(0, 192)).shape == (0, 3)
    with pytest.raises(ParameterError):
        model.embed_frames(torch.zeros(5, 100))
    with pytest.raises(ParameterError):
        model.embed_frames(frames, chunk_frames=0)


def test_embed_frames_is_exact_in_float64():
    model = lively(seed=7).double()
    frames = features(57, seed=3).double()
    with torch.inference_mode():
        expected = model(naive_windows(frames, 10).double())
        torch.testing.assert_close(model.embed_frames(frames, chunk_frames=16), expected,
                                   atol=1e-12, rtol=0)


def test_embed_frames_matches_window_loop_and_one_batch():
    """The fully convolutional pass gives each frame the embedding of its own window.

    Its speed against the per-window loop is measured by ``benchmarks/bench_embed.py``.
    """
    torch.manual_seed(0)
    model = PaperNet().eval()
    frames = features(200)
    windows = naive_windows(frames, 10)
    with torch.inference_mode():
        dense = model.embed_frames(frames)
        looped = torch.cat([model(w[None]) for w in windows])
        batched = model(windows)
    torch.testing.assert_close(dense, looped, atol=1e-5, rtol=0)
    torch.testing.assert_close(dense, batched, atol=1e-5, rtol=0)


def test_get_params_and_build_model():
    model = seeded(n_bins=96, dims=2)
    params = model.get_params()
    assert params == {"arch": "paper", "n_bins": 96, "window": 10, "dims": 2}
    rebuilt = build_model(**params)
    assert isinstance(rebuilt, PaperNet) and rebuilt.get_params() == params
    assert isinstance(build_model(), PaperNet)
    assert ARCHITECTURES["paper"] is PaperNet
    # configs written before the window length had its own name say n_frames
    legacy = {k if k != "window" else "n_frames": v for k, v in params.items()}
    assert build_model(**legacy).get_params() == params
    assert build_model(**dict(legacy, n_frames=20)).window == 20
    with pytest.raises(ParameterError, match="known: paper"):
        build_model("resnet")
    with pytest.raises(ParameterError, match="width"):
        build_model("paper", width=3)


def test_arrays_roundtrip_through_npz(tmp_path):
    model = seeded(1)
    arrays = state_to_arrays(model)
    assert set(arrays) == {f"l{i}.{kind}" for i in range(5) for kind in ("weight", "bias")}
    assert all(a.dtype == np.float32 for a in arrays.values())
    cl_arrays = state_to_arrays(model.to(memory_format=torch.channels_last))
    assert all(a.flags.c_contiguous and np.array_equal(a, arrays[k]) for k, a in cl_arrays.items())
    np.savez(tmp_path / "w.npz", **arrays)
    other = seeded(2)
    with np.load(tmp_path / "w.npz", allow_pickle=False) as npz:
        load_arrays(other, npz)
    for pa, pb in zip(model.parameters(), other.parameters()):
        assert torch.equal(pa, pb)
    arrays["l0.weight"][:] = 0  # the arrays are copies, not views of the parameters
    assert model.l0.weight.abs().sum() > 0


def test_float16_arrays_load_into_float32():
    model = seeded(1)
    half = state_to_arrays(model, dtype=np.float16)
    assert all(a.dtype == np.float16 for a in half.values())
    other = load_arrays(seeded(2), half)
    for pa, pb in zip(model.parameters(), other.parameters()):
        assert pb.dtype == torch.float32
        torch.testing.assert_close(pb, pa, atol=1e-5, rtol=1e-3)
    frames = features(20)
    with torch.inference_mode():
        torch.testing.assert_close(other.embed_frames(frames), model.embed_frames(frames),
                                   atol=1e-4, rtol=1e-2)


def test_load_arrays_names_first_mismatch():
    model = seeded()
    good = state_to_arrays(model)
    before = model.l0.weight.clone()

    bad = dict(good, **{"l1.weight": np.zeros((40, 20, 3, 12), np.float32)})
    bad["l0.weight"] = good["l0.weight"] + 1  # must not be copied: the check comes first
    with pytest.raises(ParameterError, match=r"'l1\.weight'.*\(40, 20, 3, 12\)"):
        load_arrays(model, bad)
    assert torch.equal(model.l0.weight, before)

    missing = {k: v for k, v in good.items() if k != "l3.bias"}
    with pytest.raises(ParameterError, match=r"'l3\.bias' is missing"):
        load_arrays(model, missing)

    with pytest.raises(ParameterError, match=r"'l9\.weight' is not part"):
        load_arrays(model, dict(good, **{"l9.weight": np.zeros(3, np.float32)}))

    with pytest.raises(ParameterError, match="dtype"):
        load_arrays(model, dict(good, **{"l4.bias": np.zeros(3, np.int64)}))
    with pytest.raises(ParameterError, match="floating"):
        state_to_arrays(model, dtype=np.int32)


# -- the fused tanh + max-pool step used in training ---------------------------------------------


def _pool_pair(x):
    """The reference layer order and the fused step on copies of x: outputs and input grads."""

    from soundatlas.model import _MaxPoolTanh

    ref_in, fused_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = F.max_pool2d(torch.tanh(ref_in), (2, 1))
    fused = _MaxPoolTanh.apply(fused_in)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    ref.backward(grad)
    fused.backward(grad)
    return ref, fused, ref_in.grad, fused_in.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 3, 8, 5), (4, 3, 7, 5), (2, 20, 2, 17)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_pool_equals_the_reference_layers(dtype, shape, channels_last):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype) * 2
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref, fused, ref_grad, fused_grad = _pool_pair(x)
    assert fused.shape == ref.shape and fused.dtype == ref.dtype
    assert torch.equal(fused, ref)
    assert torch.equal(fused_grad, ref_grad)  # no ties in tanh at this precision
    if channels_last:  # the next convolution gets the layout it wants, without a copy
        assert fused.is_contiguous(memory_format=torch.channels_last)


def test_fused_pool_in_bf16_differs_only_where_tanh_rounds_two_values_equal():
    x = (torch.randn(8, 6, 8, 30, generator=torch.Generator().manual_seed(0)) * 3)
    x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    ref, fused, ref_grad, fused_grad = _pool_pair(x)
    assert torch.equal(fused, ref)  # rounding tanh never reorders values
    differs = ref_grad != fused_grad
    first, second = x[:, :, 0::2], x[:, :, 1::2]
    tied = (torch.tanh(first) == torch.tanh(second)) & (first != second)
    # a differing gradient lies in a pair tied after tanh and distinct before it
    pair_differs = differs[:, :, 0::2] | differs[:, :, 1::2]
    assert pair_differs.any()  # at this scale tanh saturates: some pairs do tie
    assert not (pair_differs & ~tied).any()
    # there, the reference sends the gradient to the first row, the fused step to the larger
    # (which makes no difference where tanh is 1 or -1: its gradient is 0)
    larger_second = tied & (second > first) & (ref.abs() < 1)
    assert torch.equal(pair_differs, larger_second)


def test_fused_pool_needs_two_rows():
    from soundatlas.model import _MaxPoolTanh

    with pytest.raises(ParameterError, match="2 rows"):
        _MaxPoolTanh.apply(torch.zeros(2, 3, 1, 4))


def test_fused_pool_gradient_is_right():
    from soundatlas.model import _MaxPoolTanh

    x = torch.randn(2, 3, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(_MaxPoolTanh.apply, (x.requires_grad_(),))


def test_model_forward_with_fused_pool_is_the_same_function():
    model = lively(dims=3).double()
    x = features(10, batch=6).double()
    plain, fused = model(x), model(x, fused_pool=True)
    assert torch.equal(plain, fused)
    grads = []
    for kw in ({}, {"fused_pool": True}):
        model.zero_grad()
        model(x, **kw).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


class _Convolutions:
    """Counts the F.conv2d calls made inside it (a TorchFunctionMode)."""

    def __init__(self):
        from torch.overrides import TorchFunctionMode

        calls = self.calls = []

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func is F.conv2d:
                    calls.append(tuple(args[0].shape))
                return func(*args, **(kwargs or {}))

        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def test_bf16_inference_fuses_each_convolution_with_its_tanh_and_agrees_with_the_unfused_steps():
    from soundatlas.model import _fused_conv_tanh

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    assert _fused_conv_tanh(torch.device("cpu"))  # a CPU torch wheel has the fused step
    model = lively(seed=4)
    frames = features(300, seed=4)
    with torch.inference_mode(), _Convolutions() as fused_run:
        fused, fused_hidden = model.embed_frames(frames, precision="bf16", with_hidden=True)
    with torch.no_grad():  # the unfused steps: what autograd needs, and fp32
        exact = model.embed_frames(frames)
    with torch.enable_grad(), _Convolutions() as unfused_run:
        unfused, unfused_hidden = model.embed_frames(frames, precision="bf16", with_hidden=True)
    assert fused_run.calls == [] and len(unfused_run.calls) == 3 * 2  # 300 frames: 2 chunks
    assert fused.dtype == unfused.dtype == torch.float32 and fused.shape == (300, 3)
    extent = float((exact.max(0).values - exact.min(0).values).max())
    # oneDNN's tanh and torch's round a bf16 value differently now and then; both are bf16 runs
    assert float((fused - unfused.detach()).abs().max()) <= 0.01 * extent
    assert float((fused - exact).abs().max()) <= 0.01 * extent
    assert float((fused_hidden - unfused_hidden.detach()).abs().max()) <= 0.05
    assert not torch.equal(fused, unfused.detach())  # it is another computation


def test_embed_frames_sees_few_input_shapes_whatever_the_file_lengths():
    # oneDNN keeps kernels per input shape: a library's many file lengths must not become as many
    # shapes, or an embed's memory grows with the library (issue 14 §3)
    model = lively(seed=2)
    seen = set()
    rng = np.random.default_rng(0)
    lengths = [1, 37, 300, *rng.integers(1, 700, size=40)]
    with torch.inference_mode():
        for i, n_time in enumerate(lengths):
            frames = features(int(n_time), seed=int(n_time))
            with _Convolutions() as convolutions:  # the input shape of every convolution
                got = model.embed_frames(frames, chunk_frames=256)
            seen.update(convolutions.calls)
            if i < 3:  # the rounded chunks' extra frames change nothing
                torch.testing.assert_close(got, model(naive_windows(frames, 10)), atol=1e-5,
                                           rtol=0)
    # three convolutions a pass, each seeing one shape per chunk length: 256 and the multiples
    # of 64 below it (without the rounding, nearly every file length would be one more)
    assert 3 <= len(seen) <= 3 * (256 // 64), sorted(seen)
