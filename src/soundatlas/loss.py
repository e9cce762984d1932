"""The paper's ternary contrastive loss (docs/DESIGN.md §1, "Loss").

For anchor, positive and negative embeddings ``z_a, z_p, z_n`` (one row per triple):

    D_p = ||z_a - z_p||,  D_n = ||z_a - z_n||
    L = mean( max(0, D_p - m_p)^2 + max(0, m_n - D_n)^2 ) + origin_weight * mean ||z_a||

Distances use a safe Euclidean norm: the exact value ``sqrt(sum v^2)``, with gradient 0 where the
vector is exactly 0 (a valid subgradient), instead of the NaN that ``sqrt`` gives there. That case
is common: with m_p = 0 a collapsed positive pair has D_p = 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from soundatlas.errors import ParameterError

__all__ = ["ContrastiveLoss", "anchor_loss", "safe_norm"]


def safe_norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each row, with gradient 0 (not NaN) for an all-zero row.

    Parameters
    ----------
    v : torch.Tensor of shape (B, d)
        The vectors, one per row.

    Returns
    -------
    torch.Tensor of shape (B,)
        ``sqrt(sum v^2)`` per row, exact; its gradient is 0 where the row is exactly 0.
    """
    sq = (v * v).sum(dim=-1)
    nonzero = sq > 0
    # the inner where keeps sqrt's backward away from 0, the outer one zeroes the gradient there
    return torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, torch.ones_like(sq))),
                       torch.zeros_like(sq))


def anchor_loss(z: torch.Tensor, z_base: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """How far a batch's points moved from where the model a run started from puts them.

    The mean squared distance between each window's point and its point under the base model,
    in units of ``scale`` (the contrastive loss's negative margin, which sets the map's scale):
    a point moved by one margin costs 1. ``train``'s ``anchor`` weighs it
    (``TrainSettings.anchor``): a fine-tuning that keeps what the base model knows while the
    neighbourhoods teach it the new sounds.

    Parameters
    ----------
    z : torch.Tensor of shape (B, dims)
        The points of the model being trained (with gradient).
    z_base : torch.Tensor of shape (B, dims)
        The same windows' points under the base model (held fixed: no gradient reaches them).
    scale : float, default=1.0
        The length that counts as 1 (> 0).

    Returns
    -------
    torch.Tensor
        The scalar term.

    Raises
    ------
    ParameterError
        If the shapes differ or are not (B, dims) with B >= 1, or ``scale`` is not positive.
    """
    if z.ndim != 2 or z.shape[0] < 1 or z_base.shape != z.shape:
        raise ParameterError(f"z and z_base have shapes {tuple(z.shape)} and "
                             f"{tuple(z_base.shape)}; expected two equal (B, dims) with B >= 1")
    if not (math.isfinite(scale) and scale > 0):
        raise ParameterError(f"scale={scale!r} must be a positive number")
    return (z - z_base.detach()).square().sum(dim=1).mean() / (scale * scale)


class ContrastiveLoss(nn.Module):
    """Ternary contrastive loss: margins ``m_p`` (pull), ``m_n`` (push) and an origin penalty.

    ``forward(z_a, z_p, z_n)`` takes three (B, dims) tensors and returns the scalar loss;
    ``parts`` returns its terms as floats for logging.

    Parameters
    ----------
    m_p : float, default=0.0
        Positive margin (>= 0): positives farther than it from the anchor are pulled in.
    m_n : float, default=1.0
        Negative margin (>= 0): negatives nearer than it to the anchor are pushed out.
    origin_weight : float, default=0.001
        Weight (>= 0) of the mean anchor norm in the loss; the paper's weight for a
        neighbourhood is its ``Neighbourhood.origin_weight``.

    Raises
    ------
    ParameterError
        If a margin or the weight is not a finite number >= 0.
    """

    def __init__(self, *, m_p: float = 0.0, m_n: float = 1.0, origin_weight: float = 0.001):
        super().__init__()
        for name, value in (("m_p", m_p), ("m_n", m_n), ("origin_weight", origin_weight)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ParameterError(f"{name}={value!r} must be a finite number >= 0")
        self.m_p = float(m_p)
        self.m_n = float(m_n)
        self.origin_weight = float(origin_weight)

    def extra_repr(self) -> str:
        """The margins and the weight, for the module's repr."""
        return f"m_p={self.m_p}, m_n={self.m_n}, origin_weight={self.origin_weight}"

    def _terms(self, z_a, z_p, z_n):
        if z_a.ndim != 2 or z_a.shape[0] == 0 or z_p.shape != z_a.shape or z_n.shape != z_a.shape:
            raise ParameterError(
                f"z_a, z_p, z_n have shapes {tuple(z_a.shape)}, {tuple(z_p.shape)}, "
                f"{tuple(z_n.shape)}; expected three equal (B, dims) with B >= 1"
            )
        d_p = safe_norm(z_a - z_p)
        d_n = safe_norm(z_a - z_n)
        pos = torch.clamp(d_p - self.m_p, min=0).square().mean()
        neg = torch.clamp(self.m_n - d_n, min=0).square().mean()
        origin = self.origin_weight * safe_norm(z_a).mean()
        return pos, neg, origin, d_p, d_n

    def forward(self, z_a: torch.Tensor, z_p: torch.Tensor, z_n: torch.Tensor) -> torch.Tensor:
        """The loss of a batch of triples.

        Parameters
        ----------
        z_a, z_p, z_n : torch.Tensor of shape (B, dims)
            Anchor, positive and negative embeddings, B >= 1.

        Returns
        -------
        torch.Tensor
            The scalar loss (pull + push + weighted origin term).

        Raises
        ------
        ParameterError
            If the three shapes differ or are not (B, dims) with B >= 1.
        """
        pos, neg, origin, _, _ = self._terms(z_a, z_p, z_n)
        return pos + neg + origin

    @torch.no_grad()
    def parts(self, z_a: torch.Tensor, z_p: torch.Tensor, z_n: torch.Tensor) -> dict[str, float]:
        """The loss and its pieces as floats, for logging (no gradient).

        Parameters
        ----------
        z_a, z_p, z_n : torch.Tensor of shape (B, dims)
            Anchor, positive and negative embeddings, as for ``forward``.

        Returns
        -------
        dict of str to float
            'loss', 'pos', 'neg', 'origin' (weighted), 'd_p' and 'd_n' (mean distances),
            'active_neg' (fraction of negatives closer than ``m_n``).

        Raises
        ------
        ParameterError
            If the three shapes differ or are not (B, dims) with B >= 1.
        """
        pos, neg, origin, d_p, d_n = self._terms(z_a, z_p, z_n)
        return {
            "loss": float(pos + neg + origin),
            "pos": float(pos),
            "neg": float(neg),
            "origin": float(origin),
            "d_p": float(d_p.mean()),
            "d_n": float(d_n.mean()),
            "active_neg": float((d_n < self.m_n).float().mean()),
        }
