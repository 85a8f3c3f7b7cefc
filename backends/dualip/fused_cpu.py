"""One pass over the columns per iteration on the CPU: x = P_C(-(c + A^T w) / gamma) and A x, fused in C++.

The torch path makes about a dozen passes over column-length vectors per iteration (a gather of w, the
product with A's values, the Newton steps' comparisons, products and block sums, the clip, the sparse
product A x). Here every block is handled whole while its columns are in cache: v_j = -(c_j + sum_k a_kj
w_k) / gamma, the warm-started Newton steps on tau (same rule, same fallback max v - r as
``fast_projection.simplex_box_project``), x_j = clip(v_j - tau, l_j, u_j), and x_j's products a_kj x_j
added to a per-thread copy of A x; the copies are summed in thread order, so a run is deterministic for a
given thread count. x itself is never stored; v lives in one column-length scratch vector the step keeps
(allocated once: a fresh one per iteration cost page faults). The extension is compiled on first use
(torch's cpp_extension: a C++ compiler and ninja, about 20 s once per machine, cached after).
"""

from __future__ import annotations

import os
import shutil

import torch

from dualip_model.errors import ModelError

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <limits>
#include <vector>

template <typename T>
static void fused_step(const T* w, const T* c, const int32_t* col_ptr, const int32_t* row_idx, const T* vals,
                       int64_t m, const int64_t* offsets, int64_t nb, const T* rhs, const bool* is_le,
                       const bool* is_box, const T* lower, const T* upper, bool per_column_bounds,
                       const T* tau_in, T* tau_out, T* scratch, T* acc, int64_t stride, double gamma, int64_t steps) {
  const T scale = static_cast<T>(-1.0 / gamma);
  at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
    T* ax = acc + at::get_thread_num() * stride;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t a = offsets[b], e = offsets[b + 1];
      if (a == e) { tau_out[b] = 0; continue; }
      T vmax = -std::numeric_limits<T>::infinity();
      for (int64_t j = a; j < e; ++j) {  // v_j = -(c_j + sum_k a_kj w_k) / gamma
        T g = c[j];
        if (col_ptr == nullptr) {
          if (row_idx[j] < m) g = g + vals[j] * w[row_idx[j]];
        } else {
          for (int32_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) g = g + vals[k] * w[row_idx[k]];
        }
        const T v = g * scale;
        scratch[j] = v;
        vmax = std::max(vmax, v);
      }
      const T fallback = vmax - rhs[b];
      T tau = tau_in[b];
      for (int64_t s = 0; s < steps; ++s) {  // Newton steps on sum_j (v_j - tau)_+ = r
        T sum = 0;
        int64_t count = 0;
        for (int64_t j = a; j < e; ++j) {  // branch-free, so that it vectorizes
          const bool active = scratch[j] > tau;
          sum += active ? scratch[j] : T(0);
          count += active;
        }
        tau = count > 0 ? (sum - rhs[b]) / static_cast<T>(count) : fallback;
      }
      if (is_le[b]) tau = std::max(tau, T(0));
      if (is_box[b]) tau = 0;
      tau_out[b] = tau;
      for (int64_t j = a; j < e; ++j) {  // x_j = clip(v_j - tau, l_j, u_j); A x += a_.j x_j
        const T lo = per_column_bounds ? lower[j] : lower[0];
        const T hi = per_column_bounds ? upper[j] : upper[0];
        const T x = std::min(std::max(scratch[j] - tau, lo), hi);
        if (x == 0) continue;
        if (col_ptr == nullptr) {
          if (row_idx[j] < m) ax[row_idx[j]] += vals[j] * x;
        } else {
          for (int32_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) ax[row_idx[k]] += vals[k] * x;
        }
      }
    }
  });
}

std::vector<torch::Tensor> step(torch::Tensor w, torch::Tensor c, torch::Tensor col_ptr, torch::Tensor row_idx,
                                torch::Tensor vals, torch::Tensor offsets, torch::Tensor rhs, torch::Tensor is_le,
                                torch::Tensor is_box, torch::Tensor lower, torch::Tensor upper, torch::Tensor tau,
                                torch::Tensor scratch, double gamma, int64_t steps) {
  const int64_t m = w.size(0), n = c.size(0), nb = rhs.size(0);
  const int64_t threads = at::get_num_threads();
  auto acc = torch::zeros({threads, m}, w.options());
  auto tau_out = torch::empty({nb}, w.options());
  const bool per_column = lower.numel() == n && n != 1;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "fused_step", [&] {
    fused_step<scalar_t>(w.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
                         col_ptr.numel() ? col_ptr.data_ptr<int32_t>() : nullptr, row_idx.data_ptr<int32_t>(),
                         vals.data_ptr<scalar_t>(), m, offsets.data_ptr<int64_t>(), nb, rhs.data_ptr<scalar_t>(),
                         is_le.data_ptr<bool>(), is_box.data_ptr<bool>(), lower.data_ptr<scalar_t>(),
                         upper.data_ptr<scalar_t>(), per_column, tau.data_ptr<scalar_t>(),
                         tau_out.data_ptr<scalar_t>(), scratch.data_ptr<scalar_t>(), acc.data_ptr<scalar_t>(), m,
                         gamma, steps);
  });
  return {acc.sum(0), tau_out};
}
"""

_MODULE = None


def compiler_found() -> bool:
    """Whether torch's extension build finds a C++ compiler (``$CXX``, else ``c++``)."""
    return shutil.which(os.environ.get("CXX", "c++")) is not None


def _module():
    """The compiled extension (built on first use, then taken from torch's extension cache)."""
    global _MODULE
    if _MODULE is None:
        from torch.utils.cpp_extension import load_inline
        if shutil.which("ninja") is None:  # pip's ninja lives beside the interpreter, maybe not on PATH
            try:
                import ninja
                os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
            except ImportError:
                pass
        try:
            _MODULE = load_inline(name="dualip_fused_cpu", cpp_sources=[_SOURCE], functions=["step"],
                                  extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=False)
        except Exception as exc:  # no compiler, no ninja, no headers: say which option needs them
            raise ModelError(f"DualipOptions.fused_cpu: the C++ extension could not be built ({exc}); it needs a "
                             "C++ compiler and ninja (pip install ninja), or set fused_cpu=False") from exc
    return _MODULE


class FusedStep:
    """(A x*(w), tau) of one iteration in one pass over the columns; see the module docstring."""

    # threads x m accumulator entries, zeroed every iteration: at most 2^22 of them or one per column
    MAX_ACCUMULATORS = 1 << 22

    def __init__(self, prob):
        """ModelError (see check_supported) where the fused step cannot run ``prob``."""
        FusedStep.check_supported(prob)
        self.prob = prob
        self.module = _module()
        at, blocks = prob.At, prob.blocks
        empty = torch.empty(0, dtype=torch.int32)
        self.col_ptr = empty if at.ptr is None else at.ptr
        self.bounds = [torch.as_tensor(b, dtype=prob.dtype).reshape(-1) for b in (blocks.lower, blocks.upper)]
        self.scratch = torch.empty(prob.n, dtype=prob.dtype)  # v of the current iteration

    @staticmethod
    def check_supported(prob) -> None:
        """ModelError naming what keeps ``prob`` off the fused step, if anything does."""
        reasons = []
        if prob.device.type != "cpu":
            reasons.append(f"device {prob.device} (CPU only)")
        if prob.storage != "fast":
            reasons.append(f"storage {prob.storage!r} (needs 'fast')")
        if not prob.fast_projection:
            reasons.append("blocks other than simplex and box")
        if prob.At.vals is None or prob.At.vals.dtype != prob.dtype:
            reasons.append("A's values stored in another dtype")
        threads = torch.get_num_threads()
        if prob.m * threads > max(FusedStep.MAX_ACCUMULATORS, prob.n):
            reasons.append(f"{prob.m} rows x {threads} threads (a copy of A x per thread, zeroed every iteration: "
                           f"at most max(2^22, {prob.n} columns) entries)")
        if reasons:
            raise ModelError("DualipOptions.fused_cpu cannot be used here: " + "; ".join(reasons))

    def __call__(self, w: torch.Tensor, gamma: float, tau: torch.Tensor, steps: int):
        p, at, blocks = self.prob, self.prob.At, self.prob.blocks
        return self.module.step(w, p.c, self.col_ptr, at.idx, at.vals, blocks.offsets, blocks.rhs, blocks.is_le,
                                blocks.is_box, self.bounds[0], self.bounds[1], tau, self.scratch, float(gamma),
                                int(steps))
