"""The embedding network: a window of log-CQT frames in, a point in ``dims``-D out.

``PaperNet`` is the paper's architecture (docs/DESIGN.md §1), for a (1, 10, 192) window of
time x freq:

    L0  20 kernels 3x13, valid, tanh, max-pool (2,1)   -> 20 x 4 x 180
    L1  40 kernels 3x11, tanh, max-pool (2,1)          -> 40 x 1 x 170
    L2  80 kernels 1x9, tanh                           -> 80 x 1 x 162
    L3  fully connected 12960 -> 256, tanh
    L4  fully connected 256 -> dims, linear

With ``pitch_axis=True`` (not in the paper) L4 maps to ``dims - 1`` coordinates and the last one
is the centre frame's measured pitch (``soundatlas.pitch_axis.frame_height``): a learned timbre
plane beside a pitch height that nothing learns.

``forward`` embeds a batch of windows (training). ``embed_frames`` embeds the window centred at
every frame of a whole file at once, fully convolutionally: each layer runs once over the file
with stride-1 pooling, the layers after a pool dilated in time (a trous / shift-and-stitch), and L3
as a convolution whose kernel is L3's own weight viewed as (256, 80, 1, 162). The result equals
``forward`` on every zero-padded window, without computing any frame twice per layer.

Weights persist as plain arrays (``state_to_arrays`` / ``load_arrays``, as npz), never pickle.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundatlas.errors import ParameterError
from soundatlas.pitch_axis import frame_height
from soundatlas.settings import PRECISIONS

__all__ = [
    "PaperNet",
    "ARCHITECTURES",
    "build_model",
    "init_weights",
    "state_to_arrays",
    "load_arrays",
    "PRECISIONS",
    "native_bf16",
    "inference_precision",
]

#: ``embed_frames`` computes a short chunk at a length rounded up to a multiple of this many
#: frames, so that the network sees few distinct input shapes (see there).
_CHUNK_ROUND = 64

#: The most weights a network may have (the paper's has 3,374,907): a model's config.json
#: with a huge ``dims``, ``n_bins`` or ``window`` is refused before anything is allocated (a
#: fuzzed config with dims in the millions took 22 GB and was killed for memory).
MAX_WEIGHTS = 100_000_000


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


class PaperNet(nn.Module):
    """The paper's convolutional embedding network.

    Layer sizes follow from the parameters; the defaults give the paper's 3,374,907 parameters.
    Weights start as N(0, 0.01), biases 0.

    Parameters
    ----------
    n_bins : int, default=192
        CQT bins per frame (>= 31).
    window : int, default=10
        Frames per window, the window length (the two pools need at least 10).
    dims : int, default=3
        Output dimensions.
    standardize : bool, default=False
        Subtract a per-bin mean and divide by a per-bin scale (set by ``set_input_stats``)
        before the first layer. Not in the paper.
    pitch_axis : bool, default=False
        The last output coordinate is the window's centre frame's pitch in octaves
        (``pitch_axis.frame_height`` of the frame as given, before any standardisation); L4
        maps to the other ``dims - 1``. Not in the paper.
    bins_per_octave : int, default=24
        The CQT's bins per octave, for the pitch axis (unused without it).

    Attributes
    ----------
    feature_shape : tuple of int
        (channels, time, freq) of what L3 sees: (80, 1, 162) for the defaults.
    in_mean, in_scale : torch.Tensor of shape (n_bins,)
        The input statistics, buffers present only when ``standardize`` is on.

    Raises
    ------
    ParameterError
        If a size is not a positive integer, or too small for the network's kernels and pools.
    """

    arch = "paper"
    channels = (20, 40, 80)
    kernels = ((3, 13), (3, 11), (1, 9))  # time x freq
    pools = (2, 2, 1)  # time pooling after each conv
    n_hidden = 256

    def __init__(self, *, n_bins: int = 192, window: int = 10, dims: int = 3,
                 standardize: bool = False, pitch_axis: bool = False, bins_per_octave: int = 24):
        super().__init__()
        # Not in the paper (a named option, off for the reference preset): subtract a per-bin
        # mean and divide by a per-bin scale measured on the training windows. Without it, Adam
        # drives the tanh units of L0 into saturation on the raw log-CQT (all positive, noise
        # floor ~1.8) and the map collapses to a point; see benchmarks/RESULTS.md.
        self.standardize = bool(standardize)
        self.n_bins = _check_int("n_bins", n_bins, 1)
        self.window = _check_int("window", window, 1)
        self.pitch_axis = bool(pitch_axis)
        self.dims = _check_int("dims", dims, 2 if self.pitch_axis else 1)
        self.bins_per_octave = _check_int("bins_per_octave", bins_per_octave, 1)
        n_t, n_f = self.window, self.n_bins
        for (k_t, k_f), pool in zip(self.kernels, self.pools):
            n_t, n_f = (n_t - k_t + 1) // pool, n_f - k_f + 1
            if n_t < 1:
                raise ParameterError(f"window={window} is too short for the network (>= 10)")
            if n_f < 1:
                raise ParameterError(f"n_bins={n_bins} is too few for the network (>= 31)")
        self.feature_shape = (self.channels[-1], n_t, n_f)  # what L3 sees: 80 x 1 x 162
        # the fully connected layers hold nearly all the weights: counted before any is made
        weights = (int(np.prod(self.feature_shape)) + self.dims) * self.n_hidden
        if weights > MAX_WEIGHTS:
            raise ParameterError(f"n_bins={n_bins}, window={window} and dims={dims} make a "
                                 f"network of about {weights:,} weights, more than the "
                                 f"{MAX_WEIGHTS:,} soundatlas builds")
        if self.standardize:
            self.register_buffer("in_mean", torch.zeros(n_bins))
            self.register_buffer("in_scale", torch.ones(n_bins))
        n_in = 1
        for i, (n_out, kernel) in enumerate(zip(self.channels, self.kernels)):
            self.add_module(f"l{i}", nn.Conv2d(n_in, n_out, kernel))
            n_in = n_out
        self.l3 = nn.Linear(int(np.prod(self.feature_shape)), self.n_hidden)
        self.l4 = nn.Linear(self.n_hidden, self.dims - self.pitch_axis)
        init_weights(self)

    def _convs(self):
        return zip((self.l0, self.l1, self.l2), self.pools)

    def get_params(self) -> dict:
        """The constructor arguments plus the architecture name: what goes into the model's JSON.

        Returns
        -------
        dict
            {'arch', 'n_bins', 'window', 'dims'}, and 'standardize': True when it is on,
            'pitch_axis': True and 'bins_per_octave' when that is; ``build_model(**params)``
            rebuilds the same shape.
        """
        params = {"arch": self.arch, "n_bins": self.n_bins, "window": self.window,
                  "dims": self.dims}
        if self.standardize:
            params["standardize"] = True
        if self.pitch_axis:
            params.update(pitch_axis=True, bins_per_octave=self.bins_per_octave)
        return params

    def _with_height(self, points: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """``points`` (..., dims - 1) with the height of ``frames`` (..., n_bins) as the last
        coordinate, when the model has a pitch axis; else ``points``."""
        if not self.pitch_axis:
            return points
        height = frame_height(frames, self.bins_per_octave).to(points.device, points.dtype)
        return torch.cat([points, height.unsqueeze(-1)], dim=-1)

    @torch.no_grad()
    def set_input_stats(self, mean, scale) -> None:
        """Set the per-bin mean and scale of the (noised) training windows, for ``standardize``.

        Parameters
        ----------
        mean : array-like of shape (n_bins,)
            Per-bin mean.
        scale : array-like of shape (n_bins,)
            Per-bin scale; values below 1e-3 are raised to 1e-3.

        Raises
        ------
        ParameterError
            If the model was built without ``standardize=True``.
        """
        if not self.standardize:
            raise ParameterError("this model was built without standardize=True")
        self.in_mean.copy_(torch.as_tensor(mean, dtype=self.in_mean.dtype))
        self.in_scale.copy_(torch.as_tensor(scale, dtype=self.in_scale.dtype).clamp_min(1e-3))

    def _standardized(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.in_mean) / self.in_scale if self.standardize else x

    def forward(self, x: torch.Tensor, *, fused_pool: bool = False,
                height_frames: torch.Tensor | None = None) -> torch.Tensor:
        """Embed a batch of log-CQT windows.

        Parameters
        ----------
        x : torch.Tensor of shape (B, window, n_bins)
            The windows.
        fused_pool : bool, default=False
            Run each tanh + max-pool pair as one ``_MaxPoolTanh`` (pool first): the same
            output, a faster backward (for training; see there).
        height_frames : torch.Tensor of shape (B, n_bins), optional
            With a pitch axis: the frames the height is read from (the trainer gives the centre
            frames before the input noise, as ``embed`` reads them); by default each window's
            centre frame as given.

        Returns
        -------
        torch.Tensor of shape (B, dims)
            The embeddings.

        Raises
        ------
        ParameterError
            If ``x`` is not of shape (B, window, n_bins).
        """
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.window, self.n_bins):
            raise ParameterError(
                f"windows of shape {tuple(x.shape)} given, expected (B, {self.window}, "
                f"{self.n_bins})"
            )
        centre = x[:, self.window // 2] if height_frames is None else height_frames
        x = self._standardized(x).unsqueeze(1)
        for conv, pool in self._convs():
            x = conv(x)
            if fused_pool and pool == 2:
                x = _MaxPoolTanh.apply(x)
                continue
            x = torch.tanh(x)
            if pool > 1:
                x = F.max_pool2d(x, (pool, 1))
        x = torch.tanh(self.l3(x.flatten(1)))
        return self._with_height(self.l4(x), centre)

    def embed_frames(self, frames: torch.Tensor, *, chunk_frames: int = 256,
                     pad_value: float = 0.0, precision: str = "fp32",
                     with_hidden: bool = False, height_frames=None):
        """Embed the window centred at every frame of a file.

        The window of frame ``f`` covers frames ``f - window//2 .. f - window//2 + window - 1``;
        frames outside the file read as ``pad_value``. Equals ``forward`` on each window (in
        fp32). Runs with autograd if it is enabled; wrap calls in ``torch.inference_mode()`` to
        embed.

        Parameters
        ----------
        frames : array-like of shape (T, n_bins) or (B, T, n_bins)
            The log-CQT frames of one file, or a batch of files of equal length.
        chunk_frames : int, default=256
            At most this many output frames (summed over the batch) are computed per pass, so
            memory stays bounded for long files. 256 keeps a pass's activations (about 7 MB per
            layer) in the CPU's caches: 1.1x the frames/s of 1024 on a 2-core VM
            (benchmarks/RESULTS.md, "Embedding without AMX").
        pad_value : float, default=0.0
            The value of frames outside the file (0, as the windows of ``forward`` are
            zero-padded).
        precision : {'fp32', 'bf16'}, default='fp32'
            The arithmetic of the convolutions and matrix products: fp32 (exact), or bf16
            (autocast, about 3x faster where the CPU has it natively; see
            :func:`inference_precision`). The input standardisation and the output stay fp32.
        with_hidden : bool, default=False
            Also return the hidden layer per frame: tanh of L3, what L4 maps to the output.
        height_frames : array-like of the shape of ``frames``, optional
            With a pitch axis: the frames whose pitch is the height (``embed_many`` gives the
            frames before the prediction noise, which moves the pitch of a tenth of frames);
            by default ``frames`` themselves.

        Returns
        -------
        torch.Tensor of shape (T, dims) or (B, T, dims)
            One embedding per frame, batched as ``frames`` is, in the model's dtype. With
            ``with_hidden``, a pair of it and the hidden layer, (T, 256) or (B, T, 256), float32.

        Raises
        ------
        ParameterError
            If ``frames`` has the wrong shape, ``chunk_frames`` is not an integer >= 1 or
            ``precision`` is neither fp32 nor bf16.
        """
        chunk_frames = _check_int("chunk_frames", chunk_frames, 1)
        if precision not in ("fp32", "bf16"):
            raise ParameterError(f"precision={precision!r} must be 'fp32' or 'bf16'")
        weight = self.l0.weight
        x = torch.as_tensor(frames, dtype=weight.dtype, device=weight.device)
        if x.ndim not in (2, 3) or x.shape[-1] != self.n_bins:
            raise ParameterError(
                f"frames of shape {tuple(x.shape)} given, expected (T, {self.n_bins}) or "
                f"(B, T, {self.n_bins})"
            )
        single = x.ndim == 2
        if single:
            x = x.unsqueeze(0)
        n_batch, n_time = x.shape[:2]
        raw = x
        if self.pitch_axis and height_frames is not None:
            raw = torch.as_tensor(height_frames, dtype=torch.float32).reshape(x.shape)
        before = self.window // 2
        after = self.window - 1 - before
        x = self._standardized(F.pad(x, (0, 0, before, after), value=pad_value))
        step = max(1, chunk_frames // max(n_batch, 1))
        out, hidden = [], []
        bf16 = precision == "bf16"
        # bf16 inference on the CPU runs each convolution and its tanh as one oneDNN step
        fused = bf16 and not torch.is_grad_enabled() and _fused_conv_tanh(x.device)
        if fused:
            x = x.to(torch.bfloat16)  # the fused step is not autocast: it is given bf16
            convs = [(c.weight.to(torch.bfloat16), c.bias.to(torch.bfloat16))
                     for c in (self.l0, self.l1, self.l2)]
        else:
            convs = [(c.weight, c.bias) for c in (self.l0, self.l1, self.l2)]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            w3 = self._l3_weight_channels_last(torch.bfloat16 if bf16 else None)
            for start in range(0, n_time, step):
                n = min(step, n_time - start)
                part = x[:, start:start + n + self.window - 1]
                # A chunk shorter than ``step`` (the last) is computed at a length rounded up to
                # a multiple of _CHUNK_ROUND: oneDNN keeps compiled kernels for every input
                # shape it has seen, and a library's chunk lengths would otherwise take up to
                # ``step`` shapes (1.4 GB in a 10k-sample embed). The extra frames' outputs are
                # dropped; the windows of the frames kept never reach them.
                rounded = min(step, -(-n // _CHUNK_ROUND) * _CHUNK_ROUND)
                if rounded > n:
                    part = F.pad(part, (0, 0, 0, rounded - n))
                z, h = self._embed_dense(part, convs, w3, fused=fused)
                out.append(z[:, :n].to(weight.dtype))
                if with_hidden:
                    hidden.append(h[:, :n].float())
        z = torch.cat(out, dim=1) if out else weight.new_zeros(n_batch, 0, self.l4.out_features)
        z = self._with_height(z, raw)
        if not with_hidden:
            return z[0] if single else z
        h = torch.cat(hidden, dim=1) if hidden else weight.new_zeros(n_batch, 0, self.n_hidden)
        return (z[0], h[0]) if single else (z, h)

    def _l3_weight_channels_last(self, dtype=None) -> torch.Tensor:
        """L3's weight with its inputs in the order ``_embed_dense`` has them in memory, (t3,
        f3, C) instead of (C, t3, f3): then the features of a frame are a view, not a copy of
        12,960 values per frame (5 % of an embed's time). In ``dtype`` if given (bf16: cast once
        per call, not once per chunk)."""
        n_c, n_t3, n_f3 = self.feature_shape
        w = self.l3.weight.view(self.n_hidden, n_c, n_t3, n_f3).permute(0, 2, 3, 1)
        w = w.reshape(self.n_hidden, -1)
        return w if dtype is None else w.to(dtype)

    def _embed_dense(self, x: torch.Tensor, convs: list, w3: torch.Tensor, *,
                     fused: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T + window - 1, n_bins) padded frames -> (B, T, dims) and the hidden layer (B, T,
        256), one pass per layer; ``convs`` is (weight, bias) of L0-L2, ``w3`` is
        ``_l3_weight_channels_last()``, ``fused`` runs each convolution and its tanh as one
        oneDNN step (bf16 tensors, no autograd)."""
        n_time = x.shape[1] - self.window + 1
        x = x.unsqueeze(1)
        dilation = 1  # the time stride the pools so far would have had
        for (weight, bias), pool in zip(convs, self.pools):
            # channels-last: oneDNN's dilated convolutions run about twice as fast in it on the CPU
            x = x.contiguous(memory_format=torch.channels_last)
            # a kernel one frame long is not dilated (oneDNN may pick a slower dilated path)
            dil = dilation if weight.shape[2] > 1 else 1
            if fused:  # tanh then max equals max then tanh: tanh is increasing
                x = torch.ops.mkldnn._convolution_pointwise(
                    x, weight, bias, [0, 0], [1, 1], [dil, 1], 1, "tanh", [], "")
            else:
                x = F.conv2d(x, weight, bias, dilation=(dil, 1))
            for _ in range(1, pool):  # stride-1 dilated max-pool; 6x faster than max_pool2d
                x = torch.maximum(x[:, :, :-dilation], x[:, :, dilation:])
            if not fused:  # in place when nothing needs the pre-activation (a new tensor
                # costs as much again)
                x = torch.tanh(x) if torch.is_grad_enabled() else x.tanh_()
            dilation *= pool
        # L3 as a convolution whose kernel is its own weight viewed as (256, 80, t3, f3) with time
        # dilation: gather each frame's t3 dilated rows, then one matmul. In channels-last memory
        # x is (B, T', f3, C), so with w3's (t3, f3, C) order a frame's features are a view
        # when t3 is 1 (the paper's window); conv2d would reorder the 3.3 M weights on every call
        n_t3 = self.feature_shape[1]
        x = x.permute(0, 2, 3, 1)  # (B, T', f3, C)
        if n_t3 > 1:
            x = x.unfold(1, (n_t3 - 1) * dilation + 1, 1)[..., ::dilation]  # (B, T', f3, C, t3)
            x = x.permute(0, 1, 4, 2, 3)  # (B, T', t3, f3, C)
        x = x[:, :n_time].flatten(2)  # floor pooling may have left rows past T: dropped
        h = torch.tanh(F.linear(x, w3, self.l3.bias))
        return self.l4(h), h


_FUSED_OK: dict[str, bool] = {}  # device type -> whether the fused convolution + tanh runs


def _fused_conv_tanh(device: torch.device) -> bool:
    """Whether oneDNN's fused convolution + tanh (the step torch.compile fuses into on the CPU)
    runs here, in bf16: on a 2-core VM without AMX it makes a bf16 embed 1.1x faster (a tanh
    is a fifth of the network's time otherwise: benchmarks/RESULTS.md, "Embedding without
    AMX"). Tried once per device type on a small input against the unfused steps; where the
    step is missing (another torch build) or disagrees, the unfused steps run."""
    if device.type != "cpu":
        return False
    ok = _FUSED_OK.get(device.type)
    if ok is None:
        ok = False
        try:
            if torch.backends.mkldnn.is_available():
                gen = torch.Generator().manual_seed(0)
                x = torch.randn(1, 2, 5, 7, generator=gen).to(torch.bfloat16)
                w = torch.randn(3, 2, 2, 3, generator=gen).to(torch.bfloat16)
                b = torch.randn(3, generator=gen).to(torch.bfloat16)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.no_grad():
                    got = torch.ops.mkldnn._convolution_pointwise(
                        x, w, b, [0, 0], [1, 1], [2, 1], 1, "tanh", [], "")
                    want = torch.tanh(F.conv2d(x.float(), w.float(), b.float(),
                                               dilation=(2, 1)))
                ok = got.shape == want.shape and bool(
                    torch.allclose(got.float(), want, atol=0.02, rtol=0))
        except (AttributeError, RuntimeError, NotImplementedError):
            ok = False
        _FUSED_OK[device.type] = ok
    return ok


class _MaxPoolTanh(torch.autograd.Function):
    """``max_pool2d(tanh(x), (2, 1))`` computed as ``tanh(max_pool2d(x, (2, 1)))``, one step.

    The two are equal (tanh, and its rounding to the output's precision, never decrease). This
    form runs tanh on half the values and, for the backward, keeps which row of each pair won as
    a 0/1 number in x's dtype instead of max_pool2d's int64 indices: for a channels-last x on the
    CPU, the layer's forward and backward together take about a quarter of the time of the two
    library ops (benchmarks/RESULTS.md §3). The gradient is the same except where a pair's two
    values differ but their tanh rounds to the same number: max_pool2d after tanh sends the
    gradient to the first row, this to the larger value. Equal values go to the first row in both.
    """

    @staticmethod
    def forward(ctx, x):
        n, c, h, w = x.shape
        if h < 2:
            raise ParameterError(f"a (2, 1) max-pool needs at least 2 rows, got {tuple(x.shape)}")
        # channels-last memory is (n, h, w, c): each pair of time rows is a view, no copy
        rows = x.permute(0, 2, 3, 1)[:, : h - h % 2].reshape(n, h // 2, 2, w, c)
        first, second = rows[:, :, 0], rows[:, :, 1]
        # as a number, not a bool mask: multiplying by a bool mask is ~7x slower on the CPU
        pick = torch.ge(first, second,
                        out=torch.empty(first.shape, dtype=x.dtype, device=x.device))
        y = torch.tanh(torch.maximum(first, second))
        ctx.save_for_backward(y, pick)
        ctx.rows = h
        return y.permute(0, 3, 1, 2)  # (n, c, h // 2, w), channels-last

    @staticmethod
    def backward(ctx, grad):
        y, pick = ctx.saved_tensors
        g = torch.ops.aten.tanh_backward(grad.permute(0, 2, 3, 1), y)
        n, h2, w, c = g.shape
        odd = ctx.rows % 2  # max_pool2d drops a last odd row: its gradient is 0
        out = (g.new_zeros if odd else g.new_empty)((n, ctx.rows, w, c))
        pairs = out[:, : 2 * h2].view(n, h2, 2, w, c)
        torch.mul(g, pick, out=pairs[:, :, 0])
        torch.sub(g, pairs[:, :, 0], out=pairs[:, :, 1])  # exact: pick is 0 or 1
        return out.permute(0, 3, 1, 2)


ARCHITECTURES: dict[str, type[nn.Module]] = {"paper": PaperNet}

def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 convolutions and matrix products natively.

    Parameters
    ----------
    device : {'cpu', 'cuda'}, default='cpu'

    Returns
    -------
    bool
        For the CPU, what oneDNN reports (False when torch cannot say).
    """
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # noqa: SLF001
    except (AttributeError, RuntimeError):
        return False


def inference_precision(precision: str = "auto", device: str = "cpu") -> str:
    """The arithmetic an embedding uses: ``auto`` is bf16 where ``device`` has it natively.

    Parameters
    ----------
    precision : {'auto', 'fp32', 'bf16'}, default='auto'
        As asked: ``fp32`` is the exact path, ``bf16`` puts points within about 1 % of the
        map's extent of it (``tests/test_embed_precision.py``) in a third of the time.
    device : {'cpu', 'cuda'}, default='cpu'
        Where ``auto`` asks :func:`native_bf16`.

    Returns
    -------
    {'fp32', 'bf16'}

    Raises
    ------
    ParameterError
        For a precision not in :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"precision={precision!r} must be one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


# Model configs written before the window length had its own name called it "n_frames"; they
# are read as they always were.
_OLD_PARAM_NAMES = {"n_frames": "window"}


def build_model(arch: str = "paper", **params) -> nn.Module:
    """A freshly initialised model of a registered architecture.

    ``build_model(**model.get_params())`` rebuilds a model's shape.

    Parameters
    ----------
    arch : str, default='paper'
        A key of ``ARCHITECTURES``.
    **params
        Keyword arguments of that architecture's constructor (``n_frames``, the old name of
        ``window``, is read as ``window``).

    Returns
    -------
    torch.nn.Module
        The new model.

    Raises
    ------
    ParameterError
        If ``arch`` is unknown or a parameter is not one of its constructor's.
    """
    if arch not in ARCHITECTURES:
        raise ParameterError(f"arch={arch!r} is unknown; known: {', '.join(sorted(ARCHITECTURES))}")
    cls = ARCHITECTURES[arch]
    params = dict(params)
    for old, new in _OLD_PARAM_NAMES.items():
        if old in params and new not in params:
            params[new] = params.pop(old)
    known = inspect.signature(cls).parameters
    for name in params:
        if name not in known:
            raise ParameterError(
                f"{name}={params[name]!r} is not a parameter of arch={arch!r}; known: "
                f"{', '.join(known)}"
            )
    return cls(**params)


def init_weights(model: nn.Module, *, std: float = 0.01,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Set every conv / linear weight to N(0, std) and every bias to 0, in place.

    Parameters
    ----------
    model : torch.nn.Module
        The model to initialise.
    std : float, default=0.01
        Standard deviation of the weights (finite, >= 0).
    generator : torch.Generator, optional
        Source of the draws; deterministic when seeded (the global RNG when None).

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Raises
    ------
    ParameterError
        If ``std`` is not a finite number >= 0.
    """
    if not np.isfinite(std) or std < 0:
        raise ParameterError(f"std={std} must be a finite number >= 0")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                # drawn in logical order, so a channels_last model gets the same weights
                drawn = torch.empty(module.weight.shape, dtype=module.weight.dtype)
                module.weight.copy_(drawn.normal_(0.0, std, generator=generator))
                if module.bias is not None:
                    module.bias.zero_()
    return model


def state_to_arrays(model: nn.Module, dtype=np.float32) -> dict[str, np.ndarray]:
    """The model's state as plain arrays, for ``np.savez``.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    dtype : numpy dtype, default=numpy.float32
        A floating-point type for the arrays (float16 to ship).

    Returns
    -------
    dict of str to numpy.ndarray
        ``{name: array}`` for every entry of the state dict, C-ordered copies.

    Raises
    ------
    ParameterError
        If ``dtype`` is not floating-point or a value is not finite in it.
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ParameterError(f"dtype={dtype} must be a floating-point type")
    arrays = {}
    for name, tensor in model.state_dict().items():
        array = tensor.detach().cpu().numpy().astype(dtype, order="C")  # astype copies
        if not np.isfinite(array).all():
            raise ParameterError(f"{name} has values that are not finite in {dtype}")
        arrays[name] = array
    return arrays


def load_arrays(model: nn.Module, arrays: Mapping[str, np.ndarray]) -> nn.Module:
    """Copy plain arrays into the model's state.

    Every name and shape is checked before anything is copied.

    Parameters
    ----------
    model : torch.nn.Module
        The model to fill.
    arrays : mapping of str to array
        ``{name: array}`` in any float dtype, e.g. an opened npz.

    Returns
    -------
    torch.nn.Module
        The same ``model``, its state replaced.

    Raises
    ------
    ParameterError
        At the first mismatch, naming it: an array missing, extra, of the wrong shape or not
        floating-point.
    """
    state = model.state_dict()
    given = list(arrays.keys())
    checked = {}
    for name, tensor in state.items():
        if name not in arrays:
            raise ParameterError(f"array {name!r} is missing (given: {', '.join(given)})")
        array = np.asarray(arrays[name])
        if array.shape != tuple(tensor.shape):
            raise ParameterError(
                f"array {name!r} has shape {array.shape}, the model needs {tuple(tensor.shape)}"
            )
        if array.dtype.kind != "f":
            raise ParameterError(f"array {name!r} has dtype {array.dtype}, expected floating point")
        checked[name] = array
    for name in given:
        if name not in state:
            raise ParameterError(f"array {name!r} is not part of the model")
    with torch.no_grad():
        for name, array in checked.items():
            state[name].copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return model
