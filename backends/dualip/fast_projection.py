"""Warm-started Newton projection onto simplex/box blocks: x = clip(v - tau_i, l, u), sum_i x = r_i.

The root tau_i of f(tau) = sum_j (v_j - tau)_+ - r_i is found by Newton steps from the previous
iteration's tau (f is convex, decreasing, piecewise linear: from the right one step lands left of the
root, from the left the steps increase monotonically and are exact once the active set settles; where
no column is active, tau restarts at max v - r_i, left of the root). Block sums, counts, maxima and spreads
go through ``Blocks`` (row reductions per block size or membership mat-vecs in the fast storage, segment
reductions in the compact one). With a fixed number of steps there is no host synchronization; the result
is exact whenever the active set has settled, which warm starting makes the common case.
``projections.project`` is the exact reference.
"""

from __future__ import annotations

import torch


def simplex_box_project(v, tau, blocks, steps: int, overwrite: bool = False):
    """(x, tau): x = clip(v - tau[block], l, u) with tau = 0 on BOX blocks, tau >= 0 on SIMPLEX_LE blocks.

    Temporaries: one column vector and a mask besides v and x; with ``overwrite`` x takes v's memory.
    """
    # max v - r is left of the root with (usually) the root's few active columns: the restart when none is active
    fallback = torch.where(blocks.counts > 0, blocks.reduce(v, "max").sub_(blocks.rhs), 0.0)
    for _ in range(steps):
        active = v > blocks.spread(tau)
        s = blocks.sum(v * active)  # (a product, not torch.where: several times faster on CPU; v is finite)
        k = blocks.count(active)
        del active
        tau = torch.where(k > 0, s.sub_(blocks.rhs).div_(k.clamp_(min=1)), fallback)
        del s, k
    del fallback
    tau = torch.where(blocks.is_le, tau.clamp(min=0), tau)
    tau = torch.where(blocks.is_box, 0.0, tau)
    x = blocks.minus(v, tau, out=v if overwrite else None)
    return torch.clamp_(x, blocks.lower, blocks.upper), tau


def simplex_box_linear_minimize(g, blocks, need_x: bool = True):
    """(value, x, mu) of min_{x in C_i} g^T x per block, for BOX / SIMPLEX_LE / SIMPLEX_EQ blocks only.

    SIMPLEX: value = r min(g) (LE: r min(0, min g)), the mass r split over the minimizing columns, mu = the
    multiplier d(value)/dr; BOX: each column at the bound its cost sign prefers (value -inf if that bound is
    infinite). Segment reductions only: the same results as projections.linear_minimize, without its sort.
    With ``need_x=False`` x is None (the bound needs only the values); box work is skipped without BOX blocks.
    """
    gmin = blocks.reduce(g, "min")
    gmin = torch.where(blocks.counts > 0, gmin, 0.0)
    mu = torch.where(blocks.is_le, gmin.clamp(max=0), gmin)
    value = blocks.rhs * mu
    box_x = None
    if blocks.any_box:
        mu = torch.where(blocks.is_box, 0.0, mu)
        lower = torch.as_tensor(blocks.lower, dtype=g.dtype, device=g.device)
        upper = torch.as_tensor(blocks.upper, dtype=g.dtype, device=g.device)
        box_x = torch.where(g > 0, lower.expand_as(g), torch.where(g < 0, upper.expand_as(g),
                                                                    torch.clamp(torch.zeros_like(g), lower, upper)))
        box_value = blocks.reduce(torch.where(g != 0, g * box_x, 0.0), "sum")
        value = torch.where(blocks.is_box, box_value, value)
    if not need_x:
        return value, None, mu
    is_min = g == blocks.spread(gmin)
    ties = blocks.count(is_min).clamp(min=1)
    mass = torch.where(mu < 0, blocks.rhs, torch.where(blocks.is_le, 0.0, blocks.rhs)) / ties
    x = torch.where(is_min, blocks.spread(mass), 0.0)
    if box_x is not None:
        x = torch.where(blocks.spread(blocks.is_box), box_x, x)
    return value, x, mu
