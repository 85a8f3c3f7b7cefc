"""Warm-started Newton projection onto simplex/box blocks: x = clip(v - tau_i, l, u), sum_i x = r_i.

The root tau_i of f(tau) = sum_j (v_j - tau)_+ - r_i is found by Newton steps from the previous
iteration's tau (f is convex, decreasing, piecewise linear: from the right one step lands left of the
root, from the left the steps increase monotonically and are exact once the active set settles; where
no column is active, tau restarts at max v - r_i, left of the root). Block sums, counts, maxima and spreads
go through ``Blocks`` (row reductions per block size or membership mat-vecs in the fast storage, segment
reductions in the compact one). With a fixed number of steps there is no host synchronization; the result
is exact whenever the active set has settled, which warm starting makes the common case.
``projections.project`` is the exact reference.

Box-cut blocks (l <= x <= u, sum x <=/== r_i; ``box_cut_project``, every kind at once) take warm-started
Newton steps on s_i(tau) = sum_j clip(v_j - tau, l_j, u_j) = r_i. s_i is nonincreasing and piecewise linear but
neither convex nor concave (a column joins the free set as tau passes v_j - u_j and leaves it at v_j - l_j), so
plain Newton may overshoot and cycle (it did, on a delivery model: no convergence in 20,000 iterations), and a
bracketing Newton/secant crawls along flat pieces. Each step is therefore limited to the nearest breakpoint
where a column joins: then tau never passes the root, every step lands on it or passes a breakpoint, and a
flat piece is left in one step. A Newton step from the root's linear piece lands on the root, so the
warm-started steps are exact once the free set has settled, as for simplices. The checks keep the exact
projection and linear minimization (``projections``).
"""

from __future__ import annotations

import torch

__all__ = ["simplex_box_project", "box_cut_project", "simplex_box_linear_minimize"]


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


_ROUNDING_REACH = 16  # eps (|v| + |tau|): how far past a breakpoint a box-cut step goes to count its column free


def box_cut_project(v, tau, blocks, steps: int, overwrite: bool = False):
    """(x, tau): x = clip(v - tau[block], l, u), sum_block x = r where the sum binds (tau >= 0 on LE, 0 on BOX blocks).

    Per step, at the current tau: f = s(tau) - r, the free columns k = #{j : l_j <= v_j - tau <= u_j} (the slope of
    s), and delta, the distance to the nearest breakpoint in the direction sign(f) at which a column joins the
    free set (one at its upper bound when tau rises, one at its lower bound when tau falls). tau moves by
    sign(f) |f| / k where that stays within delta: no column joins on the way, so the slope stays within k and tau
    cannot pass the root. Else it moves onto that breakpoint and past it by rounding's reach (_ROUNDING_REACH eps
    (max |v| + |tau|)), so that the column counts as free at the next step. The steps approach the root from
    either side, each one landing on it or passing a breakpoint; a flat piece (k = 0) is left in one step. Columns
    of any bounds, infinite included. A fixed number of steps: no host synchronization. Temporaries: two column
    vectors and a mask besides v and x; with ``overwrite`` x takes v's memory.
    """
    rhs, lower, upper = blocks.rhs, blocks.lower, blocks.upper
    eps = torch.finfo(v.dtype).eps
    tiny = torch.tensor(torch.finfo(v.dtype).tiny, dtype=v.dtype, device=v.device)
    v_min, v_max = torch.aminmax(v) if v.numel() else (v.new_zeros(()), v.new_zeros(()))
    reach = _ROUNDING_REACH * eps * torch.maximum(v_max, -v_min)
    # tau's domain as a floor (0 on LE blocks, -inf elsewhere) and a factor (0 on BOX blocks): per-block torch.where
    # costs several times an arithmetic op on the CPU, and the steps make ~20 per-block ops
    floor = torch.full_like(rhs, -torch.inf).masked_fill_(blocks.is_le, 0.0)
    keep = (~blocks.is_box).to(rhs.dtype)
    tau = torch.maximum(tau, floor).mul_(keep)
    for _ in range(steps):
        d = blocks.minus(v, tau)
        x = torch.clamp(d, lower, upper)
        f = blocks.sum(x).sub_(rhs)
        k = blocks.count(x == d)
        # e > 0: at the upper bound, joins once tau has risen by e; e < 0: at the lower bound, once it fell by -e
        e = d.sub_(x)
        # 1 / e (0 where e = 0, in x's memory): per block, max = 1 / (nearest join rising), min = -1 / (falling)
        inv = torch.div(e, torch.addcmul(tiny, e, e, out=x), out=x)
        del d, e
        join = torch.where(f > 0, blocks.reduce(inv, "max", initial=0.0), blocks.reduce(inv, "min", initial=0.0))
        del inv, x
        jump = (k == 0) | (f * join > k)  # |f| / k would pass the nearest join, at 1 / |join| (f join >= 0)
        # onto the join and past it by rounding's reach (no join to reach: 1 / 0, no move)
        onto = torch.nan_to_num(join.abs_().reciprocal_(), posinf=0.0).add_(tau.abs().mul_(_ROUNDING_REACH * eps))
        move = torch.where(jump, onto.add_(reach).mul_(torch.sign(f)), f / k)
        tau = torch.maximum(tau.add_(move), floor).mul_(keep)
    x = blocks.minus(v, tau, out=v if overwrite else None)
    return torch.clamp_(x, lower, upper), tau


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
