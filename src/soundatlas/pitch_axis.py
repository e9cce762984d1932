"""A measured pitch axis for the 3-D map: two learned coordinates (a timbre plane) and a height.

A model built with ``PaperNet(pitch_axis=True)`` maps a window to ``dims - 1`` coordinates from
its hidden layer (L4) and takes the last coordinate from the window's centre frame itself: the
frame's pitch by harmonic summation over the log-CQT, in octaves from the middle bin. Nothing in
the height is learned, so a note of a maker the network never heard lands at its own pitch, and a
sound's path climbs with a glide or a vibrato. What the network learns is the plane: which
sounds of about the same pitch are alike (``fit_plane``).

Why (docs/RESULTS.md, "A measured pitch axis"): three learned coordinates had to hold pitch and
timbre at once, and gave pitch away (k-NN pitch 0.715 on the held-out bank, against the input
space's 0.988). With the height measured, the learned plane holds timbre alone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from soundatlas.errors import ParameterError

__all__ = ["HARMONICS", "frame_height", "harmonic_salience", "fit_plane", "plane_start"]

#: The harmonics summed for a candidate pitch (1 = the fundamental), each weighted 1/sqrt(h).
HARMONICS = 6
_NO_PEAK = 1e-3  # log-CQT units: a real tone's peaks stand about 1 above the noise floor


def frame_height(frames: torch.Tensor, bins_per_octave: int) -> torch.Tensor:
    """The pitch of log-CQT frames by harmonic summation, in octaves from the middle bin.

    Each frame less its running mean over one octave (edges repeated) keeps its peaks (the
    positive part); the salience of bin ``b`` is the sum of that at ``b`` and at its harmonics
    2..6 (``b + round(bins_per_octave * log2(h))``) weighted by 1/sqrt(h); the height is the
    most salient bin, ``(b - n_bins // 2) / bins_per_octave``.

    Parameters
    ----------
    frames : torch.Tensor of shape (..., n_bins)
        Log-CQT frames, as the atlas stores them (not standardised).
    bins_per_octave : int
        The CQT's bins per octave.

    Returns
    -------
    torch.Tensor of shape (...), float32
        The height of each frame. A frame with no peak (silence, or a flat spectrum: salience
        below 0.001) is at 0.
    """
    x = torch.as_tensor(frames).float()
    lead, n_bins = x.shape[:-1], x.shape[-1]
    best = harmonic_salience(x.reshape(-1, n_bins), bins_per_octave).max(dim=1)
    height = (best.indices.float() - n_bins // 2) / bins_per_octave
    # a peak smaller than float rounding of the running mean is no peak
    return torch.where(best.values > _NO_PEAK, height, torch.zeros_like(height)).reshape(lead)


def harmonic_salience(frames: torch.Tensor, bins_per_octave: int) -> torch.Tensor:
    """The salience of each bin as the pitch of log-CQT frames (``frame_height``'s measure):
    each frame less its running mean over one octave (edges repeated), its positive part, summed
    at the bin and its harmonics 2..6 weighted by 1/sqrt(h).

    Parameters
    ----------
    frames : torch.Tensor of shape (n, n_bins)
        Log-CQT frames, not standardised.
    bins_per_octave : int
        The CQT's bins per octave.

    Returns
    -------
    torch.Tensor of shape (n, n_bins), float32
    """
    if bins_per_octave < 1:
        raise ParameterError(f"bins_per_octave={bins_per_octave!r} must be >= 1")
    x = torch.as_tensor(frames).float()[:, None, :]
    n_bins = x.shape[-1]
    left = bins_per_octave // 2
    padded = F.pad(x, (left, bins_per_octave - 1 - left), mode="replicate")
    flat = (x - F.avg_pool1d(padded, bins_per_octave, stride=1)).clamp_min(0)[:, 0]
    salience = torch.zeros_like(flat)
    for h in range(1, HARMONICS + 1):
        off = int(round(bins_per_octave * np.log2(h)))
        if off < n_bins:
            salience[:, : n_bins - off] += flat[:, off:] / h ** 0.5
    return salience


def plane_start(base_points: np.ndarray, height: np.ndarray, l4_weight: np.ndarray) -> np.ndarray:
    """Where ``fit_plane`` starts: the base map's two main directions once the height is
    regressed out of it, as a (2, n_hidden) map of the hidden layer (through the base L4)."""
    a = np.c_[np.ones(len(height)), height]
    rest = base_points - a @ np.linalg.lstsq(a, base_points, rcond=None)[0]
    _, _, vt = np.linalg.svd(rest - rest.mean(0), full_matrices=False)
    return vt[:2] @ np.asarray(l4_weight, dtype=np.float64)


def fit_plane(hidden: np.ndarray, height: np.ndarray, classes: np.ndarray, start: np.ndarray, *,
              steps: int = 3000, batch: int = 1024, lr: float = 0.003,
              temperature: float = 0.01, seed: int = 0, progress=None):
    """Learn the plane: an affine map of the hidden layer to 2-D, beside a fixed height.

    The loss is neighbourhood components analysis in 3-D: for each frame of a batch, the
    softmax of ``-d^2 / temperature`` over the others, ``d`` the distance in (plane, height),
    and minus the log of the probability given to frames of its own class. The plane is held
    at an r.m.s. radius of 1 (one octave of height) in every batch, so it can only rearrange
    sounds, not outgrow the height.

    Parameters
    ----------
    hidden : ndarray of shape (n, n_hidden)
        Hidden-layer vectors of training frames.
    height : ndarray of shape (n,)
        Their heights (``frame_height``), in octaves.
    classes : array-like of shape (n,)
        Their classes (e.g. maker and instrument, or the drum).
    start : ndarray of shape (2, n_hidden)
        The first plane (``plane_start``).
    steps, batch, lr, temperature, seed
        Adam steps, frames per batch, its learning rate, the softmax's temperature (octaves
        squared) and the seed of the batches.
    progress : callable, optional
        Called with (step, loss) every 100 steps.

    Returns
    -------
    weight : ndarray of shape (2, n_hidden), float32
    bias : ndarray of shape (2,), float32
        The plane ``hidden @ weight.T + bias``, centred and of r.m.s. radius 1 on ``hidden``.
    """
    hidden = np.asarray(hidden, dtype=np.float32)
    if not (len(hidden) == len(height) == len(classes)):
        raise ParameterError("hidden, height and classes must have one row per frame")
    if len(hidden) < 2:
        raise ParameterError("fit_plane needs at least two frames")
    gen = torch.Generator().manual_seed(seed)
    _, label = np.unique(np.asarray(classes).astype(str), return_inverse=True)
    h_all = torch.from_numpy(hidden)
    z_all = torch.as_tensor(np.asarray(height), dtype=torch.float32)
    y_all = torch.from_numpy(label)
    mean = h_all.mean(0)
    weight = torch.nn.Parameter(torch.as_tensor(start, dtype=torch.float32).clone())
    opt = torch.optim.Adam([weight], lr=lr)
    batch = min(batch, len(hidden))
    for step in range(steps):
        idx = torch.randint(0, len(hidden), (batch,), generator=gen)
        q = (h_all[idx] - mean) @ weight.T
        q = q - q.mean(0)
        q = q / q.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)
        d2 = torch.cdist(torch.cat([q, z_all[idx, None]], 1), torch.cat([q, z_all[idx, None]], 1))
        d2 = d2.pow(2).fill_diagonal_(float("inf"))
        logp = torch.log_softmax(-d2 / temperature, 1)
        same = y_all[idx, None] == y_all[None, idx]
        same.fill_diagonal_(False)
        has = same.any(1)
        loss = -torch.logsumexp(logp.masked_fill(~same, -float("inf")), 1)[has].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None and (step % 100 == 0 or step == steps - 1):
            progress(step, loss.item())
    with torch.no_grad():
        q = (h_all - mean) @ weight.T
        centre = q.mean(0)
        radius = (q - centre).pow(2).sum(1).mean().sqrt().clamp_min(1e-12)
        w = weight / radius
        b = -(mean @ weight.T + centre) / radius
    return w.numpy().astype(np.float32), b.numpy().astype(np.float32)
