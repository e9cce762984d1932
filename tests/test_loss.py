"""The contrastive loss against a naive per-triple loop on hand-built triples."""

from __future__ import annotations

import math

import pytest
import torch

from soundatlas.errors import ParameterError
from soundatlas.loss import ContrastiveLoss

A = [0.1, 0.2, 0.3]
TRIPLES = [
    # (anchor, positive, negative)
    (A, [0.5, -0.1, 0.0], [0.3, 0.4, 0.1]),  # both terms active for the reference margins
    ([-0.4, 0.0, 0.7], [-0.2, 0.3, 0.9], [2.5, -1.0, 1.5]),  # D_n > m_n: negative inactive
    ([0.6, -0.3, 0.2], [0.65, -0.3, 0.24], [0.9, -0.1, 0.1]),  # D_p ~ 0.064: below m_p > 0
    ([0.2, 0.9, -0.5], [0.2, 0.9, -0.5], [0.0, 0.5, -0.6]),  # z_a == z_p exactly
    ([1.2, -0.8, 0.3], [0.4, 0.1, 0.2], [1.2, -0.7, 0.35]),  # far positive, close negative
]
MARGINS = [(0.0, 1.0, 0.001), (0.0, 1.0, 0.002), (0.1, 1.0, 0.001), (0.3, 2.0, 0.0),
           (0.0, 0.5, 0.05)]


def naive_loss(triples, m_p, m_n, origin_weight):
    """The paper's formula, one triple at a time, in plain Python floats."""
    total = 0.0
    for a, p, n in triples:
        d_p = math.sqrt(sum((ai - pi) ** 2 for ai, pi in zip(a, p)))
        d_n = math.sqrt(sum((ai - ni) ** 2 for ai, ni in zip(a, n)))
        norm_a = math.sqrt(sum(ai * ai for ai in a))
        total += max(0.0, d_p - m_p) ** 2 + max(0.0, m_n - d_n) ** 2 + origin_weight * norm_a
    return total / len(triples)


def numeric_gradient(triples, margins, h=1e-6):
    """Central differences of naive_loss, one coordinate at a time: [(g_a, g_p, g_n), ...]."""
    flat = [[list(v) for v in t] for t in triples]
    grads = []
    for t in range(len(flat)):
        per_role = []
        for role in range(3):
            g = []
            for k in range(len(flat[t][role])):
                x = flat[t][role][k]
                flat[t][role][k] = x + h
                up = naive_loss(flat, *margins)
                flat[t][role][k] = x - h
                down = naive_loss(flat, *margins)
                flat[t][role][k] = x
                g.append((up - down) / (2 * h))
            per_role.append(g)
        grads.append(per_role)
    return grads


def as_tensors(triples, dtype=torch.float64, requires_grad=False):
    return [torch.tensor([t[role] for t in triples], dtype=dtype, requires_grad=requires_grad)
            for role in range(3)]


@pytest.mark.parametrize("margins", MARGINS)
def test_value_matches_naive_loop(margins):
    m_p, m_n, w = margins
    loss = ContrastiveLoss(m_p=m_p, m_n=m_n, origin_weight=w)
    expected = naive_loss(TRIPLES, *margins)
    assert float(loss(*as_tensors(TRIPLES))) == pytest.approx(expected, abs=1e-12)
    assert float(loss(*as_tensors(TRIPLES, torch.float32))) == pytest.approx(expected, abs=1e-6)
    for i in range(len(TRIPLES)):  # each case alone, so no term hides behind another
        one = TRIPLES[i:i + 1]
        assert float(loss(*as_tensors(one))) == pytest.approx(naive_loss(one, *margins), abs=1e-12)


@pytest.mark.parametrize("margins", MARGINS)
def test_gradient_matches_finite_differences(margins):
    m_p, m_n, w = margins
    z = as_tensors(TRIPLES, requires_grad=True)
    ContrastiveLoss(m_p=m_p, m_n=m_n, origin_weight=w)(*z).backward()
    numeric = numeric_gradient(TRIPLES, margins)
    for role in range(3):
        assert torch.isfinite(z[role].grad).all()
        expected = torch.tensor([numeric[t][role] for t in range(len(TRIPLES))],
                                dtype=torch.float64)
        torch.testing.assert_close(z[role].grad, expected, atol=1e-7, rtol=1e-6)


def test_gradient_matches_analytic_formula():
    m_p, m_n, w = 0.1, 1.0, 0.002
    z = as_tensors(TRIPLES, requires_grad=True)
    ContrastiveLoss(m_p=m_p, m_n=m_n, origin_weight=w)(*z).backward()
    n = len(TRIPLES)
    for t, (a, p, neg) in enumerate(TRIPLES):
        d_p = math.dist(a, p)
        d_n = math.dist(a, neg)
        pull = 2 * max(0.0, d_p - m_p) / d_p if d_p > 0 else 0.0
        push = 2 * max(0.0, m_n - d_n) / d_n
        norm_a = math.hypot(*a)
        for k in range(3):
            g_p = -pull * (a[k] - p[k]) / n
            g_n = push * (a[k] - neg[k]) / n
            g_a = -g_p - g_n + w * a[k] / norm_a / n
            assert float(z[0].grad[t, k]) == pytest.approx(g_a, abs=1e-12)
            assert float(z[1].grad[t, k]) == pytest.approx(g_p, abs=1e-12)
            assert float(z[2].grad[t, k]) == pytest.approx(g_n, abs=1e-12)


def test_coincident_points_give_finite_gradients():
    # z_a == z_p, z_a == z_n and z_a == 0: every norm is at its non-differentiable point
    zero = torch.zeros(2, 3, requires_grad=True)
    same_p = torch.zeros(2, 3, requires_grad=True)
    same_n = torch.zeros(2, 3, requires_grad=True)
    for loss in (ContrastiveLoss(), ContrastiveLoss(m_p=0.5, origin_weight=1.0)):
        value = loss(zero, same_p, same_n)
        assert value.item() == pytest.approx(1.0, abs=1e-7)  # only (m_n - 0)^2
        value.backward()
        for t in (zero, same_p, same_n):
            assert torch.isfinite(t.grad).all()
            t.grad = None


def test_perfect_configuration_has_zero_loss():
    z_a = torch.tensor([[0.3, -0.2, 0.1], [1.0, 1.0, 1.0]], dtype=torch.float64,
                       requires_grad=True)
    z_p = z_a.detach().clone().requires_grad_()
    z_n = (z_a.detach() + torch.tensor([1.5, 0.0, 0.0], dtype=torch.float64)).requires_grad_()
    loss = ContrastiveLoss(m_p=0.0, m_n=1.0, origin_weight=0.0)(z_a, z_p, z_n)
    assert loss.item() == 0.0
    loss.backward()
    for t in (z_a, z_p, z_n):
        assert not t.grad.any()


def test_parts_for_logging():
    margins = (0.1, 1.0, 0.002)
    loss = ContrastiveLoss(m_p=margins[0], m_n=margins[1], origin_weight=margins[2])
    z = as_tensors(TRIPLES)
    parts = loss.parts(*z)
    assert set(parts) == {"loss", "pos", "neg", "origin", "d_p", "d_n", "active_neg"}
    assert all(isinstance(v, float) for v in parts.values())
    assert parts["loss"] == pytest.approx(naive_loss(TRIPLES, *margins), abs=1e-12)
    assert parts["loss"] == pytest.approx(parts["pos"] + parts["neg"] + parts["origin"])
    # each term alone: m_n = 0 switches the push off, a huge m_p the pull
    assert parts["pos"] == pytest.approx(naive_loss(TRIPLES, margins[0], 0.0, 0.0), abs=1e-12)
    assert parts["neg"] == pytest.approx(naive_loss(TRIPLES, 1e9, margins[1], 0.0), abs=1e-12)
    d_n = [math.dist(a, n) for a, _, n in TRIPLES]
    assert parts["d_p"] == pytest.approx(sum(math.dist(a, p) for a, p, _ in TRIPLES) / 5)
    assert parts["d_n"] == pytest.approx(sum(d_n) / 5)
    assert parts["active_neg"] == pytest.approx(sum(d < 1.0 for d in d_n) / 5)
    assert parts["origin"] == pytest.approx(0.002 * sum(math.hypot(*a) for a, _, _ in TRIPLES) / 5)


@pytest.mark.parametrize("kwargs", [{"m_p": -0.1}, {"m_n": -1.0}, {"origin_weight": -1e-3},
                                    {"m_n": float("nan")}, {"m_p": "0"}])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ParameterError):
        ContrastiveLoss(**kwargs)


def test_bad_shapes_raise():
    loss = ContrastiveLoss()
    with pytest.raises(ParameterError, match="shapes"):
        loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(3, 3))
    with pytest.raises(ParameterError):
        loss(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 3))


# The paper's reference values (docs/DESIGN.md, "Reference values"): the margins, and the origin
# weight: 0.001 for a class partition (key = the value of one label column), 0.002 for the others.
PAPER_MARGINS = (0.0, 1.0)
PAPER_ORIGIN_WEIGHT = {"class partition": 0.001, "other": 0.002}


def registered_neighbourhoods():
    """One instance of every neighbourhood the registry holds but the mixture, built as the
    command line builds it (a label column where the class takes one)."""
    from soundatlas.neighbourhoods import NEIGHBOURHOODS, parse_neighbourhood

    return [parse_neighbourhood(f"{name}:family" if name == "label" else name)
            for name in NEIGHBOURHOODS if name != "mixture"]


def test_each_registered_neighbourhood_has_the_papers_origin_weight():
    from soundatlas.neighbourhoods import Label

    nbs = registered_neighbourhoods()
    kinds = {nb.name: "class partition" if isinstance(nb, Label) else "other" for nb in nbs}
    assert {"instrument", "label"} <= {n for n, k in kinds.items() if k == "class partition"}
    assert {"pitch", "instrument-pitch"} <= {n for n, k in kinds.items() if k == "other"}
    for nb in nbs:
        assert nb.origin_weight == PAPER_ORIGIN_WEIGHT[kinds[nb.name]], nb.spec
    loss = ContrastiveLoss()
    assert (loss.m_p, loss.m_n) == PAPER_MARGINS
    assert loss.origin_weight == PAPER_ORIGIN_WEIGHT["class partition"]


def test_a_mixtures_origin_weight_is_its_parts_weighted_mean():
    from soundatlas.neighbourhoods import parse_neighbourhood

    mix = parse_neighbourhood("instrument:3,pitch:1,augment-pair:0.5")
    expected = sum(w * nb.origin_weight for nb, w in mix.parts) / sum(w for _, w in mix.parts)
    assert mix.origin_weight == pytest.approx(expected)
    assert len({nb.origin_weight for nb, _ in mix.parts}) == 2  # the mean is not one part's



def naive_anchor(z, z_base, scale=1.0):
    """anchor_loss by hand: the mean squared move, in units of ``scale``."""
    moved = sum(sum((x - y) ** 2 for x, y in zip(a, b)) for a, b in zip(z, z_base)) / len(z)
    return moved / scale**2


def test_anchor_loss_is_the_mean_squared_move_in_units_of_the_margin():
    from soundatlas.loss import anchor_loss

    z_base = [t[0] for t in TRIPLES]
    z = [t[1] for t in TRIPLES]
    for scale in (1.0, 0.5, 2.0):
        want = naive_anchor(z, z_base, scale)
        got = anchor_loss(torch.tensor(z, dtype=torch.float64),
                          torch.tensor(z_base, dtype=torch.float64), scale)
        assert got.item() == pytest.approx(want, rel=1e-12)
    # a map moved as a whole costs its move; one left where it was costs nothing
    shifted = anchor_loss(torch.tensor(z_base, dtype=torch.float64) + 0.5,
                          torch.tensor(z_base, dtype=torch.float64))
    assert shifted.item() == pytest.approx(3 * 0.25, rel=1e-12)
    assert anchor_loss(torch.tensor(z_base), torch.tensor(z_base)).item() == 0.0
    # the gradient moves the points only, never the base (it is held fixed)
    moving = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    base = torch.tensor(z_base, dtype=torch.float64, requires_grad=True)
    anchor_loss(moving, base, 2.0).backward()
    assert base.grad is None
    expected = [2 * (a - b) / (len(z) * 4.0) for ra, rb in zip(z, z_base) for a, b in zip(ra, rb)]
    assert sum(moving.grad.tolist(), []) == pytest.approx(expected, rel=1e-9)


def test_anchor_loss_refuses_shapes_and_scales_it_cannot_use():
    from soundatlas.loss import anchor_loss

    with pytest.raises(ParameterError, match="expected two equal"):
        anchor_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ParameterError, match="B >= 1"):
        anchor_loss(torch.zeros(0, 3), torch.zeros(0, 3))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ParameterError, match="scale="):
            anchor_loss(torch.zeros(2, 3), torch.zeros(2, 3), bad)
