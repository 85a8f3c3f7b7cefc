"""One pass over the columns per iteration on the CPU: x = P_C(-(c + A^T w) / gamma) and A x, fused in C++.

The torch path makes about a dozen passes over column-length vectors per iteration (a gather of w, the
product with A's values, the Newton steps' comparisons, products and block sums, the clip, the sparse
product A x). Here every block is handled whole while its columns are in cache: v_j = -(c_j + sum_k a_kj
w_k) / gamma, the warm-started Newton steps on tau (same rule, same fallback max v - r as
``fast_projection.simplex_box_project``), x_j = clip(v_j - tau, l_j, u_j), and x_j's products a_kj x_j
added to a per-thread copy of A x; the copies are summed in thread order, so a run is deterministic for a
given thread count. x itself is never stored; v lives in one column-length scratch vector the step keeps
(allocated once: a fresh one per iteration cost page faults). The check's per-column passes are C++ too:
the primal candidate's projection and ``repair.repair``'s cut, shrink and fill (same rules, same result to
rounding; a check at 1e6 nonzeros went from ~40 to ~15 ms, the repair from ~25 to ~8). The extension is
compiled on first use (torch's cpp_extension: a C++ compiler and ninja, about 20 s once per machine, cached
after).
"""

from __future__ import annotations

import os
import shutil

import torch

from dualip_model.errors import ModelError

from .repair import cut_rows_by_threshold, repair, row_slack

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

// Columns of A: column j's entries are k in col_ptr[j]..col_ptr[j+1] (row row_idx[k], value vals[k]); without
// col_ptr column j has at most the one entry j (row_idx[j] == m: none).
template <typename T>
struct Columns {
  const int32_t* col_ptr;
  const int32_t* row_idx;
  const T* vals;
  int64_t m;

  T dot(int64_t j, const T* w) const {  // (A^T w)_j
    if (col_ptr == nullptr) return row_idx[j] < m ? vals[j] * w[row_idx[j]] : T(0);
    T g = 0;
    for (int32_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) g = g + vals[k] * w[row_idx[k]];
    return g;
  }
  void add_to(int64_t j, T x, T* ax) const {  // ax += A_.j x
    if (col_ptr == nullptr) {
      if (row_idx[j] < m) ax[row_idx[j]] += vals[j] * x;
    } else {
      for (int32_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) ax[row_idx[k]] += vals[k] * x;
    }
  }
  T row_min(int64_t j, const T* z) const {  // min over the rows k of column j of z_k (1 for none)
    if (col_ptr == nullptr) return row_idx[j] < m ? z[row_idx[j]] : T(1);
    T out = 1;
    for (int32_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) out = std::min(out, z[row_idx[k]]);
    return out;
  }
  bool all_rows_positive(int64_t j, const T* z) const {  // branch-free: the answers are random
    if (col_ptr == nullptr) return (row_idx[j] >= m) | (z[std::min<int64_t>(row_idx[j], m - 1)] > 0);
    bool out = true;
    for (int32_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) out &= z[row_idx[k]] > 0;
    return out;
  }
};

template <typename T>
Columns<T> columns(const torch::Tensor& col_ptr, const torch::Tensor& row_idx, const torch::Tensor& vals, int64_t m) {
  return {col_ptr.numel() ? col_ptr.data_ptr<int32_t>() : nullptr, row_idx.data_ptr<int32_t>(),
          vals.data_ptr<T>(), m};
}

// The block's tau: `steps` warm-started Newton steps on sum_j (v_j - tau)_+ = r from tau0 (fallback max v - r
// where no v_j exceeds tau), then >= 0 for sum <= r and 0 for a box: as fast_projection.simplex_box_project.
template <typename T>
T block_tau(const T* v, int64_t a, int64_t e, T rhs, bool is_le, bool is_box, T tau, int64_t steps) {
  T vmax = -std::numeric_limits<T>::infinity();
  for (int64_t j = a; j < e; ++j) vmax = std::max(vmax, v[j]);
  const T fallback = vmax - rhs;
  for (int64_t s = 0; s < steps; ++s) {
    T sum = 0;
    int64_t count = 0;
    for (int64_t j = a; j < e; ++j) {  // branch-free, so that it vectorizes
      const bool active = v[j] > tau;
      sum += active ? v[j] : T(0);
      count += active;
    }
    tau = count > 0 ? (sum - rhs) / static_cast<T>(count) : fallback;
  }
  if (is_le) tau = std::max(tau, T(0));
  if (is_box) tau = 0;
  return tau;
}

// Blocks as [offsets (nb+1; int64, or int32 in the compact storage), rhs, is_le, is_box, lower, upper]; the bounds
// per column or one for all.
using BlockArgs = std::vector<torch::Tensor>;

template <typename T>
struct BlockData {
  const int64_t* offsets64;
  const int32_t* offsets32;
  const T* rhs;
  const bool* is_le;
  const bool* is_box;
  const T* lower;
  const T* upper;
  bool per_column;
  int64_t nb;
  int64_t start(int64_t b) const { return offsets64 != nullptr ? offsets64[b] : offsets32[b]; }
  T lo(int64_t j) const { return per_column ? lower[j] : lower[0]; }
  T hi(int64_t j) const { return per_column ? upper[j] : upper[0]; }
  T clip(int64_t j, T z) const { return std::min(std::max(z, lo(j)), hi(j)); }  // z within column j's bounds
};

template <typename T>
BlockData<T> block_data(const BlockArgs& b, int64_t n) {
  const bool wide = b[0].scalar_type() == torch::kInt64;
  return {wide ? b[0].data_ptr<int64_t>() : nullptr, wide ? nullptr : b[0].data_ptr<int32_t>(), b[1].data_ptr<T>(), b[2].data_ptr<bool>(), b[3].data_ptr<bool>(),
          b[4].data_ptr<T>(), b[5].data_ptr<T>(), b[4].numel() == n && n != 1, b[1].size(0)};
}

// Per-thread copies of an m-vector, summed in thread order at the end: repeatable for a thread count.
struct Accumulators {
  torch::Tensor acc;
  Accumulators(int64_t m, const torch::TensorOptions& options)
      : acc(torch::zeros({at::get_num_threads(), m}, options)) {}
  template <typename T> T* mine() { return acc.data_ptr<T>() + at::get_thread_num() * acc.size(1); }
  torch::Tensor sum() { return acc.sum(0); }
};

// One iteration: v = -(c + A^T w) / gamma into scratch, tau per block, A x for x = clip(v - tau, l, u).
template <typename T>
void fused_step(const T* w, const T* c, const Columns<T>& A, const BlockData<T>& B, const T* tau_in, T* tau_out,
                T* scratch, Accumulators& acc, double gamma, int64_t steps) {
  const T scale = static_cast<T>(-1.0 / gamma);
  at::parallel_for(0, B.nb, 1, [&](int64_t b0, int64_t b1) {
    T* ax = acc.mine<T>();
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t a = B.start(b), e = B.start(b + 1);
      for (int64_t j = a; j < e; ++j) scratch[j] = (c[j] + A.dot(j, w)) * scale;
      const T tau = a == e ? T(0) : block_tau(scratch, a, e, B.rhs[b], B.is_le[b], B.is_box[b], tau_in[b], steps);
      tau_out[b] = tau;
      for (int64_t j = a; j < e; ++j) {
        const T x = B.clip(j, scratch[j] - tau);
        if (x != 0) A.add_to(j, x, ax);
      }
    }
  });
}

std::vector<torch::Tensor> step(torch::Tensor w, torch::Tensor c, torch::Tensor col_ptr, torch::Tensor row_idx,
                                torch::Tensor vals, BlockArgs blocks, torch::Tensor tau, torch::Tensor scratch,
                                double gamma, int64_t steps) {
  const int64_t m = w.size(0), n = c.size(0);
  Accumulators acc(m, w.options());
  auto tau_out = torch::empty({blocks[1].size(0)}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "fused_step", [&] {
    fused_step<scalar_t>(w.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), columns<scalar_t>(col_ptr, row_idx, vals, m),
                         block_data<scalar_t>(blocks, n), tau.data_ptr<scalar_t>(), tau_out.data_ptr<scalar_t>(),
                         scratch.data_ptr<scalar_t>(), acc, gamma, steps);
  });
  return {acc.sum(), tau_out};
}

// out = c + A^T w, the check's gradient, into `out` (the step's scratch: the check needs no other column vector).
void gradient(torch::Tensor w, torch::Tensor c, torch::Tensor col_ptr, torch::Tensor row_idx, torch::Tensor vals,
              torch::Tensor out) {
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "gradient", [&] {
    const auto A = columns<scalar_t>(col_ptr, row_idx, vals, w.size(0));
    const scalar_t *ws = w.data_ptr<scalar_t>(), *cs = c.data_ptr<scalar_t>();
    scalar_t* os = out.data_ptr<scalar_t>();
    at::parallel_for(0, c.size(0), 1 << 14, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) os[j] = cs[j] + A.dot(j, ws);
    });
  });
}

// A x, by columns into per-thread copies of A x (the check's products: no temporaries).
torch::Tensor times(torch::Tensor x, torch::Tensor col_ptr, torch::Tensor row_idx, torch::Tensor vals, int64_t m) {
  Accumulators acc(m, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "times", [&] {
    const auto A = columns<scalar_t>(col_ptr, row_idx, vals, m);
    const scalar_t* xs = x.data_ptr<scalar_t>();
    at::parallel_for(0, x.size(0), 1 << 14, [&](int64_t j0, int64_t j1) {
      scalar_t* ax = acc.mine<scalar_t>();
      for (int64_t j = j0; j < j1; ++j)
        if (xs[j] != 0) A.add_to(j, xs[j], ax);
    });
  });
  return acc.sum();
}

// sum_j a_j b_j with a float64 accumulator per thread, the threads' sums added in order; in a's dtype.
torch::Tensor dot(torch::Tensor a, torch::Tensor b) {
  const int64_t threads = at::get_num_threads();
  std::vector<double> partial(threads, 0.0);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "dot", [&] {
    const scalar_t *as = a.data_ptr<scalar_t>(), *bs = b.data_ptr<scalar_t>();
    at::parallel_for(0, a.size(0), 1 << 14, [&](int64_t j0, int64_t j1) {
      double sum = 0;
      for (int64_t j = j0; j < j1; ++j) sum += static_cast<double>(as[j]) * static_cast<double>(bs[j]);
      partial[at::get_thread_num()] += sum;
    });
  });
  double total = 0;
  for (double p : partial) total += p;
  return torch::tensor(total, torch::TensorOptions().dtype(torch::kFloat64)).to(a.scalar_type());
}

// x = P_C(v), by `steps` Newton steps per block from tau; returns the blocks' tau.
torch::Tensor project(torch::Tensor v, torch::Tensor x, BlockArgs blocks, torch::Tensor tau, int64_t steps) {
  auto tau_out = torch::empty_like(tau);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "project", [&] {
    const auto B = block_data<scalar_t>(blocks, v.size(0));
    const scalar_t *vs = v.data_ptr<scalar_t>(), *tau_in = tau.data_ptr<scalar_t>();
    scalar_t *xs = x.data_ptr<scalar_t>(), *out = tau_out.data_ptr<scalar_t>();
    at::parallel_for(0, B.nb, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t a = B.start(b), e = B.start(b + 1);
        const scalar_t t = a == e ? scalar_t(0)
                                  : block_tau(vs, a, e, B.rhs[b], B.is_le[b], B.is_box[b], tau_in[b], steps);
        out[b] = t;
        for (int64_t j = a; j < e; ++j) xs[j] = B.clip(j, vs[j] - t);
      }
    });
  });
  return tau_out;
}

// repair.cut_rows in place: along each violated row's entries (worst cost per unit of row use first), an entry
// keeps what the row's excess leaves after the entries before it; a column keeps the least its rows leave it.
// With one row per column (`single`) the rows run in parallel and write x directly; else one thread, through a
// per-column factor (every row reads the uncut x). `vals` holds a value per entry, or with `column_values` one
// per column (the compact storage's A of a matching).
void cut_rows(torch::Tensor x, torch::Tensor ax, torch::Tensor upper, torch::Tensor ptr, torch::Tensor cols,
              torch::Tensor vals, bool column_values, bool single) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cut_rows", [&] {
    using T = scalar_t;
    const int64_t m = ax.size(0);
    T* xs = x.data_ptr<T>();
    const T *axs = ax.data_ptr<T>(), *us = upper.data_ptr<T>(), *vs = vals.data_ptr<T>();
    const int32_t *p = ptr.data_ptr<int32_t>(), *cs = cols.data_ptr<int32_t>();
    torch::Tensor keep_col = single ? torch::Tensor() : torch::ones_like(x);
    T* keep = single ? nullptr : keep_col.data_ptr<T>();
    at::parallel_for(0, m, single ? 1 : m, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T over = axs[r] - us[r];
        if (!(over > 0)) continue;
        const double excess = over;
        double before = 0;  // the row's use by the entries before this one
        for (int32_t k = p[r]; k < p[r + 1] && before < excess; ++k) {
          const double use = static_cast<T>(vs[column_values ? cs[k] : k] * xs[cs[k]]);
          const double removed = std::min(std::max(excess - before, 0.0), use);
          const T left = static_cast<T>(std::min(std::max(1.0 - removed / std::max(use, 1e-300), 0.0), 1.0));
          if (single) xs[cs[k]] *= left;
          else keep[cs[k]] = std::min(keep[cs[k]], left);
          before += use;
        }
      }
    });
    if (!single) x.mul_(keep_col);
  });
}

// repair.shrink_blocks in place (a block with sum x > r scaled down to sum x = r), returning A x after it.
torch::Tensor shrink_blocks(torch::Tensor x, torch::Tensor col_ptr, torch::Tensor row_idx, torch::Tensor vals,
                            int64_t m, BlockArgs blocks) {
  Accumulators acc(m, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "shrink_blocks", [&] {
    using T = scalar_t;
    const auto A = columns<T>(col_ptr, row_idx, vals, m);
    const auto B = block_data<T>(blocks, x.size(0));
    T* xs = x.data_ptr<T>();
    at::parallel_for(0, B.nb, 1, [&](int64_t b0, int64_t b1) {
      T* ax = acc.mine<T>();
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t a = B.start(b), e = B.start(b + 1);
        T sum = 0;
        for (int64_t j = a; j < e; ++j) sum += xs[j];
        const T factor = !B.is_box[b] && sum > B.rhs[b] ? B.rhs[b] / std::max(sum, T(1e-300)) : T(1);
        for (int64_t j = a; j < e; ++j) {
          xs[j] *= factor;
          if (xs[j] != 0) A.add_to(j, xs[j], ax);
        }
      }
    });
  });
  return acc.sum();
}

// repair.fill_slack's raises into delta: in each block, the columns of least cost < 0 whose rows all have slack
// share the block's spare capacity (within their bounds); a box block raises every such column to its bound.
// Returns A delta, the rows' demand.
torch::Tensor fill_raises(torch::Tensor x, torch::Tensor c, torch::Tensor slack, torch::Tensor delta,
                          torch::Tensor col_ptr, torch::Tensor row_idx, torch::Tensor vals, BlockArgs blocks) {
  const int64_t m = slack.size(0);
  Accumulators acc(m, x.options());
  if (m == 0) return acc.sum();  // no rows: nothing to fill (all_rows_positive reads z[m - 1])
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fill_raises", [&] {
    using T = scalar_t;
    const auto A = columns<T>(col_ptr, row_idx, vals, m);
    const auto B = block_data<T>(blocks, x.size(0));
    const T *xs = x.data_ptr<T>(), *cs = c.data_ptr<T>(), *ss = slack.data_ptr<T>();
    T* ds = delta.data_ptr<T>();
    at::parallel_for(0, B.nb, 1, [&](int64_t b0, int64_t b1) {
      T* demand = acc.mine<T>();
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t a = B.start(b), e = B.start(b + 1);
        T best = 0, sum = 0, count = 0;
        for (int64_t j = a; j < e; ++j) {  // a candidate: improving, below its bound, all its rows with slack
          sum += xs[j];
          const int candidate = (cs[j] < 0) & (B.hi(j) - xs[j] > 0) & A.all_rows_positive(j, ss);
          ds[j] = static_cast<T>(candidate) * cs[j];  // the candidate's cost for now (a product: no branch)
          best = std::min(best, ds[j]);
        }
        for (int64_t j = a; j < e; ++j) count += (ds[j] < 0) & (ds[j] == best);
        const T spare = std::max(B.rhs[b] - sum, T(0)) / std::max(count, T(1));
        for (int64_t j = a; j < e; ++j) {
          const T room = B.hi(j) - xs[j];
          const T raise = B.is_box[b] ? (ds[j] < 0 && std::isfinite(room) ? room : T(0))
                                      : ((ds[j] < 0) & (ds[j] == best) ? std::min(room, spare) : T(0));
          ds[j] = raise;
          if (raise != 0) A.add_to(j, raise, demand);
        }
      }
    });
  });
  return acc.sum();
}

// x += delta * clip(min over the rows of each column of factor, 0, 1) (1 for a column without rows).
void apply_raises(torch::Tensor x, torch::Tensor delta, torch::Tensor factor, torch::Tensor col_ptr,
                  torch::Tensor row_idx, torch::Tensor vals) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "apply_raises", [&] {
    using T = scalar_t;
    const auto A = columns<T>(col_ptr, row_idx, vals, factor.size(0));
    T* xs = x.data_ptr<T>();
    const T *ds = delta.data_ptr<T>(), *fs = factor.data_ptr<T>();
    at::parallel_for(0, x.size(0), 1 << 14, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j)
        if (ds[j] != 0) xs[j] += ds[j] * std::min(std::max(A.row_min(j, fs), T(0)), T(1));
    });
  });
}
"""

_FUNCTIONS = ["step", "gradient", "times", "dot", "project", "cut_rows", "shrink_blocks", "fill_raises", "apply_raises"]
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
            _MODULE = load_inline(name="dualip_fused_cpu", cpp_sources=[_SOURCE], functions=_FUNCTIONS,
                                  extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=False)
        except Exception as exc:  # no compiler, no ninja, no headers: say which option needs them
            raise ModelError(f"DualipOptions.fused_cpu: the C++ extension could not be built ({exc}); it needs a "
                             "C++ compiler and ninja (pip install ninja), or set fused_cpu=False") from exc
    return _MODULE


class FusedCpu:
    """The C++ kernels for one problem: the iteration's step; the check's gradient, projection, products, dot
    products and repair."""

    # threads x m accumulator entries, zeroed at every call: at most 2^22 of them or one per column
    MAX_ACCUMULATORS = 1 << 22

    def __init__(self, prob):
        """ModelError (see check_supported) where the kernels cannot run ``prob``."""
        FusedCpu.check_supported(prob)
        self.prob = prob
        self.module = _module()
        at, blocks = prob.At, prob.blocks
        cols = torch.empty(0, dtype=torch.int32) if at.ptr is None else at.ptr
        self.columns = [cols, at.idx, at.vals]  # A by columns: the CSC arrays, or one entry per column
        self.blocks = [blocks.offsets, blocks.rhs, blocks.is_le, blocks.is_box,
                       *(torch.as_tensor(b, dtype=prob.dtype).reshape(-1) for b in (blocks.lower, blocks.upper))]
        self.scratch = torch.empty(prob.n, dtype=prob.dtype)  # the step's v; the check's gradient; the raises

    @staticmethod
    def check_supported(prob) -> None:
        """ModelError naming what keeps ``prob`` off the C++ kernels, if anything does."""
        reasons = []
        if prob.device.type != "cpu":
            reasons.append(f"device {prob.device} (CPU only)")
        if not prob.fast_projection:
            reasons.append("blocks other than simplex and box")
        if prob.At.vals is None or prob.At.vals.dtype != prob.dtype:
            reasons.append("A's values stored in another dtype")
        threads = torch.get_num_threads()
        if prob.m * threads > max(FusedCpu.MAX_ACCUMULATORS, prob.n):
            reasons.append(f"{prob.m} rows x {threads} threads (a copy of A x per thread, zeroed every iteration: "
                           f"at most max(2^22, {prob.n} columns) entries)")
        if reasons:
            raise ModelError("DualipOptions.fused_cpu cannot be used here: " + "; ".join(reasons))

    def step(self, w: torch.Tensor, gamma: float, tau: torch.Tensor, steps: int):
        """(A x*(w), tau): x*(w) = P_C(-(c + A^T w) / gamma), never stored."""
        return self.module.step(w, self.prob.c, *self.columns, self.blocks, tau, self.scratch, float(gamma),
                                int(steps))

    def gradient(self, y: torch.Tensor) -> torch.Tensor:
        """c + A^T y in the step's scratch vector (valid until the next step or repair)."""
        self.module.gradient(y, self.prob.c, *self.columns, self.scratch)
        return self.scratch

    def times(self, x: torch.Tensor) -> torch.Tensor:
        """A x (this rank's columns), by columns into per-thread copies."""
        return self.module.times(x, *self.columns, self.prob.m)

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """sum_j a_j b_j, accumulated in float64 (0-d, a's dtype)."""
        return self.module.dot(a, b)

    def project(self, v: torch.Tensor, tau: torch.Tensor, steps: int):
        """(x, tau): x = P_C(v) by ``steps`` Newton steps per block from tau (fast_projection's rule)."""
        x = torch.empty_like(v)
        return x, self.module.project(v, x, self.blocks, tau, int(steps))

    def repair(self, x: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """repair.repair in place, its per-column passes in C++: cut violated rows (on several ranks
        repair.cut_rows_by_threshold), shrink blocks, fill the slack; the rows' sums all-reduced between passes."""
        p, comm = self.prob, self.prob.comm
        if p.m and p.repair_plan.moves:  # equality blocks or floors: the torch repair (raises and moves)
            return repair(x, ax, p, overwrite=True)
        if p.m and comm.world > 1:
            x = cut_rows_by_threshold(x, ax, p.row_upper, p.c, p.repair_plan, comm)
        elif p.m:
            rows = p.repair_plan.rows  # A's rows sorted; in the compact storage of a matching, A's values by column
            values = rows.vals if rows.vals is not None else rows.col_vals
            self.module.cut_rows(x, ax, p.row_upper, rows.ptr, rows.idx, values, rows.vals is None,
                                 p.repair_plan.single)
        ax = comm.sum(self.module.shrink_blocks(x, *self.columns, p.m, self.blocks))
        if not p.m:
            return x
        slack = row_slack(p.row_upper, ax)
        demand = comm.sum(self.module.fill_raises(x, p.c, slack, self.scratch, *self.columns, self.blocks))
        factor = torch.where(demand > slack, slack / demand.clamp(min=1e-300), 1.0)
        self.module.apply_raises(x, self.scratch, factor, *self.columns)
        return x
