"""Warm-started Newton projection onto simplex/box blocks: x = clip(v - tau_i, l, u), sum_i x = r_i.

The root tau_i of f(tau) = sum_j (v_j - tau)_+ - r_i is found by Newton steps from the previous
iteration's tau (f is convex, decreasing, piecewise linear: from the right one step lands left of the
root, from the left the steps increase monotonically and are exact once the active set settles). With a
fixed number of steps there is no host synchronization; the result is exact whenever the active set
has settled, which warm starting makes the common case. ``projections.project`` is the exact reference.
"""

from __future__ import annotations

import torch


def simplex_box_project(v, tau, blocks, steps: int):
    """(x, tau): x = clip(v - tau[block], l, u) with tau = 0 on BOX blocks, tau >= 0 on SIMPLEX_LE blocks."""
    vmax = torch.segment_reduce(v, "max", offsets=blocks.offsets)
    fallback = torch.where(blocks.counts > 0, vmax - blocks.rhs, torch.zeros_like(vmax))
    n = v.shape[0]
    for _ in range(steps):
        t_col = torch.repeat_interleave(tau, blocks.counts, output_size=n)
        active = v > t_col
        k = torch.segment_reduce(active.to(v.dtype), "sum", offsets=blocks.offsets)
        s = torch.segment_reduce(torch.where(active, v, torch.zeros_like(v)), "sum", offsets=blocks.offsets)
        tau = torch.where(k > 0, (s - blocks.rhs) / k.clamp(min=1), fallback)
    tau = torch.where(blocks.is_le, tau.clamp(min=0), tau)
    tau = torch.where(blocks.is_box, torch.zeros_like(tau), tau)
    t_col = torch.repeat_interleave(tau, blocks.counts, output_size=n)
    x = torch.clamp(v - t_col, blocks.lower, blocks.upper)
    return x, tau
