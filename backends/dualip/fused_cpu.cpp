#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
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
    const int32_t* rows = row_idx;  // copies: the stores into ax may alias the fields
    const T* values = vals;
    if (col_ptr == nullptr) {
      if (rows[j] < m) ax[rows[j]] += values[j] * x;
    } else {
      for (int32_t k = col_ptr[j], end = col_ptr[j + 1]; k < end; ++k) ax[rows[k]] += values[k] * x;
    }
  }
  // out(j, (A^T w)_j) for j = a..e-1, the storage decided once (in the loop, the test and the reloads of the
  // captured arrays cost a tenth of PDHG's step)
  template <typename F>
  void dots(int64_t a, int64_t e, const T* __restrict w, const F& out) const {
    const int32_t* __restrict rows = row_idx;
    const T* __restrict values = vals;
    if (col_ptr == nullptr) {
      const int64_t rows_m = m;
      for (int64_t j = a; j < e; ++j) out(j, rows[j] < rows_m ? values[j] * w[rows[j]] : T(0));
    } else {
      const int32_t* __restrict ptr = col_ptr;
      for (int64_t j = a; j < e; ++j) {
        T g = 0;
        for (int32_t k = ptr[j]; k < ptr[j + 1]; ++k) g = g + values[k] * w[rows[k]];
        out(j, g);
      }
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

// Blocks as [offsets (nb+1; int64, or int32 in the compact storage), rhs, is_le, is_box, lower, upper, lanes,
// single, chunks]; the bounds per column or one for all; the last three from block_chunks.
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
  bool simplex;  // every column in [0, inf): the thresholds' loops drop the bounds
  // chunk c: blocks chunk_blocks[c] to chunk_blocks[c + 1]; its groups of LANES blocks of one size lanes[i],
  // chunk_lanes[c] <= i < chunk_lanes[c + 1]; its other blocks single[i], chunk_single[c] <= i < chunk_single[c + 1]
  const int64_t* lanes;
  const int64_t* single;
  const int64_t* chunk_blocks;
  const int64_t* chunk_lanes;
  const int64_t* chunk_single;
  int64_t chunks;
  int64_t first_column(int64_t c) const { return start(chunk_blocks[c]); }
  int64_t start(int64_t b) const { return offsets64 != nullptr ? offsets64[b] : offsets32[b]; }
  T lo(int64_t j) const { return per_column ? lower[j] : lower[0]; }
  T hi(int64_t j) const { return per_column ? upper[j] : upper[0]; }
  T clip(int64_t j, T z) const { return std::min(std::max(z, lo(j)), hi(j)); }  // z within column j's bounds
};

template <typename T>
BlockData<T> block_data(const BlockArgs& b, int64_t n) {
  TORCH_CHECK(b.size() == 9, "blocks: [offsets, rhs, is_le, is_box, lower, upper, lanes, single, chunks] "
              "(FusedCpu.blocks)");
  const int64_t* chunks = b[8].data_ptr<int64_t>();  // (3, count + 1), contiguous
  const bool wide = b[0].scalar_type() == torch::kInt64;
  const bool per_column = b[4].numel() == n && n != 1;
  const T *lower = b[4].data_ptr<T>(), *upper = b[5].data_ptr<T>();
  return {wide ? b[0].data_ptr<int64_t>() : nullptr, wide ? nullptr : b[0].data_ptr<int32_t>(), b[1].data_ptr<T>(), b[2].data_ptr<bool>(), b[3].data_ptr<bool>(),
          lower, upper, per_column, b[1].size(0),
          !per_column && lower[0] == 0 && upper[0] == std::numeric_limits<T>::infinity(),
          b[6].data_ptr<int64_t>(), b[7].data_ptr<int64_t>(), chunks, chunks + b[8].size(1),
          chunks + 2 * b[8].size(1), b[8].size(1) - 1};
}

// The exact threshold of block b of P_C(v): x_j = clip(v_j - tau, l_j, u_j) with sum_j x_j = r where the sum binds
// (tau >= 0 on LE blocks, tau = 0 on BOX blocks), for simplex and box-cut blocks alike. Newton steps on the
// nonincreasing piecewise linear s(tau) = sum_j clip(v_j - tau, l_j, u_j) from tau, each limited to the nearest
// breakpoint where a column joins the free set (fast_projection.box_cut_project's rule). Between tau and that
// breakpoint columns can only leave the free set, where s is convex towards the root, so a Newton step never passes
// the root: it lands on it when no free column leaves on the way (then the threshold is exact), else the next step
// goes on from there. Every step that does not end the loop passes a breakpoint, so it ends within 2 (e - a) + 1
// steps; a column at a bound counts as free only in the direction that frees it. From a warm start whose free set
// has settled: one pass. Simplex: every column in [0, inf) (B.simplex), the bounds constants.

// What one step of the search reads from a pass over the block's columns at tau: s(tau) - r, the slope's size when
// tau rises / falls, how far tau goes before a column joins / a free one leaves the free set, and max |v|.
// c ? a : b without a branch (a select on the bits; compilers turn the ternary on floating point into a branch).
template <typename T>
T select(bool c, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  U ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  const U mask = U(0) - U(c);
  const U bits = (ua & mask) | (ub & ~mask);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

template <typename T>
struct SearchPass {
  T f, free_rising, free_falling, join_rising, join_falling, leave_rising, leave_falling, vmax;

  static SearchPass start(T rhs) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    return {-rhs, 0, 0, inf, inf, inf, inf, 0};
  }
  void add(T v, T tau, T lo, T hi) {
    add_to(v, tau, lo, hi, f, free_rising, free_falling, join_rising, join_falling, leave_rising, leave_falling, vmax);
  }
  // Column v with bounds [lo, hi] added to the pass's numbers (held apart: the lanes keep each in its own array, so
  // that the loop over the lanes vectorizes); branch-free.
  static void add_to(T v, T tau, T lo, T hi, T& f, T& free_rising, T& free_falling, T& join_rising, T& join_falling,
                     T& leave_rising, T& leave_falling, T& vmax) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    const T d = v - tau;
    f += std::min(std::max(d, lo), hi);
    const bool rising = (d > lo) & (d <= hi), falling = (d >= lo) & (d < hi);  // free for a rising / falling tau
    free_rising += rising ? T(1) : T(0);  // selects, not casts of the bools: the lanes' loop vectorizes
    free_falling += falling ? T(1) : T(0);
    join_rising = std::min(join_rising, d > hi ? d - hi : inf);  // above hi: free once tau rose by d - hi
    join_falling = std::min(join_falling, d < lo ? lo - d : inf);
    leave_rising = std::min(leave_rising, rising ? d - lo : inf);  // free: at lo once tau rose by d - lo
    leave_falling = std::min(leave_falling, falling ? hi - d : inf);
    vmax = std::max(vmax, std::abs(v));
  }
  // step's common outcomes without a branch (they are random from block to block; mispredicted branches were a
  // fifth of the lanes' time): tau stays (s(tau) = r, or an LE block at its floor whose sum does not bind), or one
  // Newton step that no join cuts short and that ends the search. True, with tau there, in those cases; else false
  // and tau untouched (step decides). The same operations as step: the same tau.
  bool settles(T floor, T& tau) const {
    constexpr T inf = std::numeric_limits<T>::infinity();
    const T up = select(free_rising > 0, f / free_rising, inf), down = select(free_falling > 0, -f / free_falling, inf);
    const bool stays = (f == 0) | ((f < 0) & (tau <= floor));
    const bool rises = (f > 0) & (up <= join_rising) & (up <= leave_rising);
    const bool falls = (f < 0) & (tau > floor) & (down <= join_falling) & (down <= leave_falling);
    const T next = select(stays, tau, select(f > 0, tau + up, std::max(tau - down, floor)));
    tau = select(stays | rises | falls, next, tau);
    return stays | rises | falls;
  }
  // One step from tau (in place, never below floor); true when tau is the threshold.
  bool step(T floor, T& tau) const {
    constexpr T inf = std::numeric_limits<T>::infinity();
    if (f == 0) return true;
    // past a join by rounding's reach: the column is free
    const T reach = 16 * std::numeric_limits<T>::epsilon() * (vmax + std::abs(tau));
    if (f > 0) {  // s(tau) > r: tau rises
      const T newton = free_rising > 0 ? f / free_rising : inf;
      if (newton <= join_rising) {
        tau += newton;
        return newton <= leave_rising;  // on the root's linear piece: exact
      }
      if (join_rising == inf) return true;  // nothing can join: the lower bounds exceed r (refused by validation)
      tau += join_rising + reach;
      return false;
    }
    if (tau <= floor) return true;  // s(tau) < r: tau falls, to the floor at most (an LE block whose sum does not bind)
    const T newton = free_falling > 0 ? -f / free_falling : inf;
    if (newton <= join_falling) {
      tau = std::max(tau - newton, floor);
      return newton <= leave_falling;
    }
    if (join_falling == inf) {  // every column at its upper bound: as low as the domain allows
      tau = floor;
      return true;
    }
    tau = std::max(tau - join_falling - reach, floor);
    return false;
  }
};

// The search from tau, `passes` passes already done (the lanes' first).
template <bool Simplex, typename T>
T exact_tau_of(const T* v, int64_t a, int64_t e, const BlockData<T>& B, int64_t b, T tau, int64_t passes = 0) {
  if (B.is_box[b] || a == e) return T(0);
  constexpr T inf = std::numeric_limits<T>::infinity();
  const T floor = B.is_le[b] ? T(0) : -inf;
  tau = std::max(tau, floor);
  for (int64_t s = passes; s < 2 * (e - a) + 8; ++s) {
    auto pass = SearchPass<T>::start(B.rhs[b]);
    for (int64_t j = a; j < e; ++j) pass.add(v[j], tau, Simplex ? T(0) : B.lo(j), Simplex ? inf : B.hi(j));
    if (pass.settles(floor, tau) || pass.step(floor, tau)) break;
  }
  return tau;
}

template <typename T>
T exact_tau(const T* v, int64_t a, int64_t e, const BlockData<T>& B, int64_t b, T tau) {
  return B.simplex ? exact_tau_of<true>(v, a, e, B, b, tau) : exact_tau_of<false>(v, a, e, B, b, tau);
}

// Thresholds of LANES blocks of k columns at once (`lanes`: their indices, k <= LANE_COLUMNS): their columns copied
// lane-major, so that the passes run in vector registers across the blocks (a block of a few columns leaves a loop
// over its own columns mostly overhead: 2x faster at 5 columns per block). The same operations in the same order
// per block as block_tau and exact_tau_of: the same thresholds to the bit. Exact: the first pass in lanes, the rare
// block that needs more goes on alone.
constexpr int64_t LANES = 8;
constexpr int64_t LANE_COLUMNS = 32;

// The lanes' loops, each over a column index j and the lanes l within it, vs lane-major. The loop over l vectorizes
// as long as the compiler does not unroll it first (GCC then failed on the loop over j): hence the pragmas.
template <typename T>
void lane_max(const T* __restrict vs, int64_t k, T* __restrict vmax) {
  for (int64_t j = 0; j < k; ++j)
#pragma GCC unroll 1
    for (int64_t l = 0; l < LANES; ++l) vmax[l] = std::max(vmax[l], vs[j * LANES + l]);
}

template <typename T>
void lane_newton_sums(const T* __restrict vs, int64_t k, const T* __restrict tau, T* __restrict sum,
                      T* __restrict count) {
  for (int64_t j = 0; j < k; ++j)
#pragma GCC unroll 1
    for (int64_t l = 0; l < LANES; ++l) {
      const bool active = vs[j * LANES + l] > tau[l];
      sum[l] += active ? vs[j * LANES + l] : T(0);
      count[l] += active ? T(1) : T(0);
    }
}

template <bool Simplex, typename T>
void lane_search_pass(const T* __restrict vs, const T* __restrict lo, const T* __restrict hi, int64_t k,
                      const T* __restrict tau, T* __restrict f, T* __restrict free_rising, T* __restrict free_falling,
                      T* __restrict join_rising, T* __restrict join_falling, T* __restrict leave_rising,
                      T* __restrict leave_falling, T* __restrict vmax) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < k; ++j)
#pragma GCC unroll 1
    for (int64_t l = 0; l < LANES; ++l)
      SearchPass<T>::add_to(vs[j * LANES + l], tau[l], Simplex ? T(0) : lo[j * LANES + l],
                            Simplex ? inf : hi[j * LANES + l], f[l], free_rising[l], free_falling[l], join_rising[l],
                            join_falling[l], leave_rising[l], leave_falling[l], vmax[l]);
}

template <bool Simplex, typename T>
void lane_thresholds(const T* v, const int64_t* lanes, int64_t k, const BlockData<T>& B, const T* tau_in, T* tau_out,
                     int64_t steps, bool exact) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  constexpr int64_t bounds = Simplex ? 1 : LANE_COLUMNS * LANES;
  T vs[LANE_COLUMNS * LANES], lo[bounds], hi[bounds], tau[LANES], floor[LANES];
  for (int64_t l = 0; l < LANES; ++l) {
    const int64_t b = lanes[l], a = B.start(b);
    for (int64_t j = 0; j < k; ++j) {
      vs[j * LANES + l] = v[a + j];
      if (!Simplex) lo[j * LANES + l] = B.lo(a + j), hi[j * LANES + l] = B.hi(a + j);
    }
    floor[l] = B.is_le[b] ? T(0) : -inf;
    tau[l] = tau_in[b];
  }
  if (!exact) {  // block_tau's steps
    T vmax[LANES], fallback[LANES];
    std::fill(vmax, vmax + LANES, -inf);
    lane_max(vs, k, vmax);
    for (int64_t l = 0; l < LANES; ++l) fallback[l] = vmax[l] - B.rhs[lanes[l]];
    for (int64_t s = 0; s < steps; ++s) {
      T sum[LANES] = {}, count[LANES] = {};
      lane_newton_sums(vs, k, tau, sum, count);
      for (int64_t l = 0; l < LANES; ++l)
        tau[l] = count[l] > 0 ? (sum[l] - B.rhs[lanes[l]]) / count[l] : fallback[l];
    }
    for (int64_t l = 0; l < LANES; ++l) tau_out[lanes[l]] = std::max(tau[l], floor[l]);  // is_le: >= 0 (no box here)
    return;
  }
  T f[LANES], free_rising[LANES], free_falling[LANES], join_rising[LANES], join_falling[LANES], leave_rising[LANES],
      leave_falling[LANES], vmax[LANES];
  for (int64_t l = 0; l < LANES; ++l) {
    tau[l] = std::max(tau[l], floor[l]);
    const auto start = SearchPass<T>::start(B.rhs[lanes[l]]);
    f[l] = start.f, free_rising[l] = start.free_rising, free_falling[l] = start.free_falling;
    join_rising[l] = start.join_rising, join_falling[l] = start.join_falling, leave_rising[l] = start.leave_rising;
    leave_falling[l] = start.leave_falling, vmax[l] = start.vmax;
  }
  lane_search_pass<Simplex>(vs, lo, hi, k, tau, f, free_rising, free_falling, join_rising, join_falling, leave_rising,
                            leave_falling, vmax);
  for (int64_t l = 0; l < LANES; ++l) {
    const int64_t b = lanes[l], a = B.start(b);
    const SearchPass<T> pass{f[l], free_rising[l], free_falling[l], join_rising[l], join_falling[l], leave_rising[l],
                             leave_falling[l], vmax[l]};
    T t = tau[l];
    if (!pass.settles(floor[l], t) && !pass.step(floor[l], t)) t = exact_tau_of<Simplex>(v, a, a + k, B, b, t, 1);
    tau_out[b] = t;
  }
}

// Chunk c's thresholds of P_C(v) from tau_in: `steps` Newton steps (block_tau) or exact (exact_tau); its groups in
// lanes, its other blocks one by one.
template <typename T>
void thresholds(const T* v, const BlockData<T>& B, int64_t c, const T* tau_in, T* tau_out, int64_t steps, bool exact) {
  for (int64_t i = B.chunk_lanes[c]; i < B.chunk_lanes[c + 1]; i += LANES) {
    const int64_t* group = B.lanes + i;
    const int64_t k = B.start(group[0] + 1) - B.start(group[0]);
    if (B.simplex) lane_thresholds<true>(v, group, k, B, tau_in, tau_out, steps, exact);
    else lane_thresholds<false>(v, group, k, B, tau_in, tau_out, steps, exact);
  }
  for (int64_t i = B.chunk_single[c]; i < B.chunk_single[c + 1]; ++i) {
    const int64_t b = B.single[i], a = B.start(b), e = B.start(b + 1);
    tau_out[b] = exact ? exact_tau(v, a, e, B, b, tau_in[b])
                 : a == e ? T(0) : block_tau(v, a, e, B.rhs[b], B.is_le[b], B.is_box[b], tau_in[b], steps);
  }
}

// fn(b, a, e, clip) for the blocks b of chunk k (columns a..e-1), clip(j, z) = clip(z, l_j, u_j): max(z, 0) on
// simplex columns, the bounds' kind decided once per chunk rather than per column (a generic lambda for fn).
template <typename T, typename F>
void each_block(const BlockData<T>& B, int64_t k, const F& fn) {
  auto run = [&](const auto& clip) {
    for (int64_t b = B.chunk_blocks[k]; b < B.chunk_blocks[k + 1]; ++b) fn(b, B.start(b), B.start(b + 1), clip);
  };
  if (B.simplex) run([](int64_t, T z) { return std::max(z, T(0)); });
  else run([&B](int64_t j, T z) { return B.clip(j, z); });
}

// fn(c) for every chunk, the chunks split among the threads.
template <typename T, typename F>
void for_chunks(const BlockData<T>& B, const F& fn) {
  at::parallel_for(0, B.chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c);
  });
}

// The passes' chunks: runs of consecutive blocks of about `chunk_columns` columns (a larger block alone), so that a
// pass runs its phases (products, thresholds, clip, A x) one chunk at a time with the chunk's columns in cache. Within
// a chunk, `thresholds`' groups: its blocks of 1..LANE_COLUMNS columns and no BOX constraint by size (a stable sort:
// in block order within a size), LANES of a size to a group; the rest of each size and every other block one by
// one. Returns [lanes, single, chunks (3, count + 1): first block, first of lanes, first of single per chunk].
std::vector<torch::Tensor> block_chunks(torch::Tensor offsets, torch::Tensor is_box, int64_t chunk_columns) {
  const auto offs = offsets.to(torch::kInt64).contiguous();
  const int64_t* o = offs.data_ptr<int64_t>();
  const bool* box = is_box.data_ptr<bool>();
  const int64_t nb = offs.numel() - 1;
  auto key = [&](int64_t b) {  // the size; LANE_COLUMNS + 1 for a block that goes alone
    const int64_t size = o[b + 1] - o[b];
    return size >= 1 && size <= LANE_COLUMNS && !box[b] ? size : LANE_COLUMNS + 1;
  };
  std::vector<int64_t> lanes, single, blocks{0}, lane_starts{0}, single_starts{0}, order;
  for (int64_t b0 = 0; b0 < nb;) {
    int64_t b1 = b0 + 1;
    while (b1 < nb && o[b1 + 1] - o[b0] <= chunk_columns) ++b1;
    order.resize(b1 - b0);
    for (int64_t b = b0; b < b1; ++b) order[b - b0] = b;
    std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return key(i) < key(j); });
    for (size_t i = 0; i < order.size();) {
      size_t e = i;
      while (e < order.size() && key(order[e]) == key(order[i])) ++e;  // one size: [i, e)
      const size_t grouped = key(order[i]) <= LANE_COLUMNS ? (e - i) / LANES * LANES : 0;
      lanes.insert(lanes.end(), order.begin() + i, order.begin() + i + grouped);
      single.insert(single.end(), order.begin() + i + grouped, order.begin() + e);
      i = e;
    }
    blocks.push_back(b1);
    lane_starts.push_back(lanes.size());
    single_starts.push_back(single.size());
    b0 = b1;
  }
  auto tensor = [](const std::vector<int64_t>& v) {
    return torch::tensor(at::IntArrayRef(v), torch::TensorOptions().dtype(torch::kInt64));
  };
  return {tensor(lanes), tensor(single), torch::stack({tensor(blocks), tensor(lane_starts), tensor(single_starts)})};
}

// Per-thread copies of an m-vector (one more entry with `spare`: scatter's columns without a row), summed in thread
// order at the end: repeatable for a thread count.
struct Accumulators {
  torch::Tensor acc;
  int64_t m;
  Accumulators(int64_t m, const torch::TensorOptions& options, bool spare = false)
      : acc(torch::zeros({at::get_num_threads(), m + spare}, options)), m(m) {}
  template <typename T> T* mine() { return acc.data_ptr<T>() + at::get_thread_num() * acc.size(1); }
  torch::Tensor sum() { return acc.sum(0).narrow(0, 0, m); }
};

// ax += A x over columns a..e (a thread's share of a pass). One entry per column (no col_ptr): every column, a zero
// product included, and the columns without a row into the spare entry ax[m] (Accumulators' `spare`): adding 0 is
// cheaper than a mispredicted branch on it (few users per item at 1e6 nonzeros: 1.5 ms against 3.2); several: only
// the columns with x_j != 0. Either way the sums are those of adding the nonzero products alone.
template <typename T>
void scatter(const Columns<T>& A, const T* x, int64_t a, int64_t e, T* ax) {
  if (A.col_ptr == nullptr) {
    const int32_t* rows = A.row_idx;  // copies: the stores into ax may alias A's fields
    const T* values = A.vals;
    for (int64_t j = a; j < e; ++j) ax[rows[j]] += values[j] * x[j];
  } else {
    for (int64_t j = a; j < e; ++j)
      if (x[j] != 0) A.add_to(j, x[j], ax);
  }
}

// One iteration, one chunk of blocks at a time (block_chunks): v = -(c + A^T w) / gamma into scratch, tau per
// block, x = clip(v - tau, l, u) into scratch, A x. Each phase a loop of its own over the chunk's columns: the
// gathers of w overlap, the thresholds run in lanes (few users per item's step went from 21 to 12 ms).
template <typename T>
void fused_step(const T* w, const T* c, const Columns<T>& A, const BlockData<T>& B, const T* tau_in, T* tau_out,
                T* scratch, Accumulators& acc, double gamma, int64_t steps, bool exact) {
  const T scale = static_cast<T>(-1.0 / gamma);
  for_chunks(B, [&](int64_t k) {
    const int64_t a = B.first_column(k), e = B.first_column(k + 1);
    A.dots(a, e, w, [=](int64_t j, T g) { scratch[j] = (c[j] + g) * scale; });
    thresholds(scratch, B, k, tau_in, tau_out, steps, exact);
    each_block(B, k, [&](int64_t b, int64_t a, int64_t e, const auto& clip) {
      const T tau = tau_out[b];
      for (int64_t j = a; j < e; ++j) scratch[j] = clip(j, scratch[j] - tau);
    });
    scatter(A, scratch, a, e, acc.mine<T>());
  });
}

std::vector<torch::Tensor> step(torch::Tensor w, torch::Tensor c, torch::Tensor col_ptr, torch::Tensor row_idx,
                                torch::Tensor vals, BlockArgs blocks, torch::Tensor tau, torch::Tensor scratch,
                                double gamma, int64_t steps, bool exact) {
  const int64_t m = w.size(0), n = c.size(0);
  Accumulators acc(m, w.options(), true);
  auto tau_out = torch::empty({blocks[1].size(0)}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "fused_step", [&] {
    fused_step<scalar_t>(w.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), columns<scalar_t>(col_ptr, row_idx, vals, m),
                         block_data<scalar_t>(blocks, n), tau.data_ptr<scalar_t>(), tau_out.data_ptr<scalar_t>(),
                         scratch.data_ptr<scalar_t>(), acc, gamma, steps, exact);
  });
  return {acc.sum(), tau_out};
}

// One PDHG primal step (pdhg.py): x_t = P_X(x - step (c + A^T y)) by exact thresholds warm-started from tau, A x_t
// into per-thread copies, sum_j (x_j - x_t,j)^2 in float64, and the Halpern iterate x_next = a x_t - b x + w x0.
// Returns [A x_t, the thresholds, sum (x - x_t)^2 (0-d, x's dtype)].
std::vector<torch::Tensor> pdhg_step(torch::Tensor x, torch::Tensor y, torch::Tensor c, torch::Tensor x0,
                                     torch::Tensor col_ptr, torch::Tensor row_idx, torch::Tensor vals,
                                     BlockArgs blocks, torch::Tensor tau, torch::Tensor x_t, torch::Tensor x_next,
                                     double step, double a_t, double a_x, double a_0) {
  const int64_t m = y.size(0), n = x.size(0);
  Accumulators acc(m, y.options(), true);
  auto tau_out = torch::empty_like(tau);
  std::vector<double> partial(at::get_num_threads(), 0.0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pdhg_step", [&] {
    using T = scalar_t;
    const auto A = columns<T>(col_ptr, row_idx, vals, m);
    const auto B = block_data<T>(blocks, n);
    const T *xs = x.data_ptr<T>(), *x0s = x0.data_ptr<T>();
    T *ts = x_t.data_ptr<T>(), *ns = x_next.data_ptr<T>(), *tau_o = tau_out.data_ptr<T>();
    const T ct = static_cast<T>(a_t), cx = static_cast<T>(a_x), c0 = static_cast<T>(a_0);
    const T *ys = y.data_ptr<T>(), *cs = c.data_ptr<T>(), s = static_cast<T>(step);
    for_chunks(B, [&](int64_t k) {  // fused_step's phases
      const int64_t a = B.first_column(k), e = B.first_column(k + 1);
      A.dots(a, e, ys, [=](int64_t j, T g) { ts[j] = xs[j] - s * (cs[j] + g); });
      thresholds(ts, B, k, tau.data_ptr<T>(), tau_o, 0, true);
      double moved = 0;
      each_block(B, k, [&](int64_t b, int64_t a, int64_t e, const auto& clip) {
        const T t = tau_o[b], w_t = ct, w_x = cx, w_0 = c0;  // copies: the stores below may alias a reference
        double block = 0;  // a sum per block: one chain of additions over all columns cost 1-2 ms at 1e6 columns
        for (int64_t j = a; j < e; ++j) {
          const T xt = clip(j, ts[j] - t);
          ts[j] = xt;
          const double d = static_cast<double>(xs[j]) - static_cast<double>(xt);
          block += d * d;
          ns[j] = w_t * xt - w_x * xs[j] + w_0 * x0s[j];
        }
        moved += block;
      });
      scatter(A, ts, a, e, acc.mine<T>());
      partial[at::get_thread_num()] += moved;
    });
  });
  double total = 0;
  for (double p : partial) total += p;
  return {acc.sum(), tau_out, torch::tensor(total, torch::TensorOptions().dtype(torch::kFloat64)).to(x.scalar_type())};
}

// s (z - clip(z, l, u)), both methods' prox step (Kernels.dual_prox): exactly 0 where l <= z <= u, else of the sign
// of the side z passed, so the dual stays in its domain exactly.
template <typename T>
T dual_prox(T z, T l, T u, T s) {
  return (z - std::min(std::max(z, l), u)) * s;
}

// The dual ascent's update from A x*(w) (solver.py), in two passes over the rows: with `adaptive` the local
// curvature ||A x - A x_prev|| / ||w - w_prev|| (float64 sums), then lip = clip(max(local, 0.95 lip), lip_floor / step,
// 1 / step) and the step s = max(1 / (1.1 lip), step), else s = step; then y+ = s (z - clip(z, l, u)) with
// z = w / s + A x, the per-row momentum t+ = (1 + sqrt(1 + 4 t^2)) / 2 restarted (t+ = 1, no momentum) on a row whose
// move turns against its gradient step, and w+ = y+ + (t - 1) / t+ (y+ - y). Returns [y+, w+, t+, lip].
std::vector<torch::Tensor> ascent_update(torch::Tensor y, torch::Tensor w, torch::Tensor t, torch::Tensor lip,
                                         torch::Tensor ax, torch::Tensor w_prev, torch::Tensor ax_prev,
                                         torch::Tensor lower, torch::Tensor upper, double step, double lip_floor,
                                         bool adaptive) {
  const int64_t m = y.size(0);
  auto y_new = torch::empty_like(y), w_new = torch::empty_like(y), t_new = torch::empty_like(y);
  auto lip_new = lip.clone();
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "ascent_update", [&] {
    using T = scalar_t;
    const T *ys = y.data_ptr<T>(), *ws = w.data_ptr<T>(), *tk = t.data_ptr<T>(), *axs = ax.data_ptr<T>(),
            *wp = w_prev.data_ptr<T>(), *ap = ax_prev.data_ptr<T>(), *ls = lower.data_ptr<T>(),
            *us = upper.data_ptr<T>();
    T *yn = y_new.data_ptr<T>(), *wn = w_new.data_ptr<T>(), *tn = t_new.data_ptr<T>();
    double s = step;
    if (adaptive) {
      std::vector<double> moves(at::get_num_threads(), 0.0), shifts(at::get_num_threads(), 0.0);
      at::parallel_for(0, m, 1 << 14, [&](int64_t r0, int64_t r1) {
        double move = 0, shift = 0;
        for (int64_t r = r0; r < r1; ++r) {
          const double da = static_cast<double>(axs[r]) - ap[r], dw = static_cast<double>(ws[r]) - wp[r];
          move += da * da;
          shift += dw * dw;
        }
        moves[at::get_thread_num()] += move;
        shifts[at::get_thread_num()] += shift;
      });
      double move = 0, shift = 0;
      for (size_t i = 0; i < moves.size(); ++i) move += moves[i], shift += shifts[i];
      const double l_max = 1.0 / step;
      const double local = std::sqrt(move) / std::max(std::sqrt(shift), 1e-30);
      const double curvature = std::min(std::max(std::max(local, 0.95 * lip.item<double>()), lip_floor * l_max), l_max);
      lip_new.fill_(curvature);
      s = std::max(1.0 / (1.1 * curvature), step);
    }
    const T st = static_cast<T>(s);
    at::parallel_for(0, m, 1 << 14, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T y1 = dual_prox(ws[r] / st + axs[r], ls[r], us[r], st);
        const bool restart = (y1 - ws[r]) * (y1 - ys[r]) < 0;
        const T t1 = T(0.5) * (T(1) + std::sqrt(T(1) + T(4) * tk[r] * tk[r]));
        const T beta = restart ? T(0) : (tk[r] - T(1)) / t1;
        tn[r] = restart ? T(1) : t1;
        wn[r] = y1 + beta * (y1 - ys[r]);
        yn[r] = y1;
      }
    });
  });
  return {y_new, w_new, t_new, lip_new};
}

// PDHG's dual step and Halpern combination (pdhg.py) in one pass over the rows: y_t = sigma (z - clip(z, l, u)) with
// z = y / sigma + 2 A x_t - A x (exactly 0 within a row's sides: y_t in the dual domain), y_next = a y_t - b y + w y0,
// ax_next = a A x_t - b A x + w A x0; with `measure` also sum (y - y_t)^2 and sum (y - y_t)(A x - A x_t) in float64.
// Returns [y_t, y_next, ax_next, the two sums (a 2-vector, x's dtype; zeros without `measure`)].
std::vector<torch::Tensor> pdhg_dual(torch::Tensor y, torch::Tensor ax, torch::Tensor ax_t, torch::Tensor y0,
                                     torch::Tensor ax0, torch::Tensor lower, torch::Tensor upper, double sigma,
                                     double a_t, double a_x, double a_0, bool measure) {
  const int64_t m = y.size(0);
  auto y_t = torch::empty_like(y), y_next = torch::empty_like(y), ax_next = torch::empty_like(y);
  std::vector<double> squares(at::get_num_threads(), 0.0), products(at::get_num_threads(), 0.0);
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "pdhg_dual", [&] {
    using T = scalar_t;
    const T *ys = y.data_ptr<T>(), *axs = ax.data_ptr<T>(), *ts = ax_t.data_ptr<T>(), *y0s = y0.data_ptr<T>(),
            *a0s = ax0.data_ptr<T>(), *ls = lower.data_ptr<T>(), *us = upper.data_ptr<T>();
    T *yt = y_t.data_ptr<T>(), *yn = y_next.data_ptr<T>(), *an = ax_next.data_ptr<T>();
    const T s = static_cast<T>(sigma), inv = static_cast<T>(1.0 / sigma), ct = static_cast<T>(a_t),
            cx = static_cast<T>(a_x), c0 = static_cast<T>(a_0);
    at::parallel_for(0, m, 1 << 14, [&](int64_t r0, int64_t r1) {
      double square = 0, product = 0;
      for (int64_t r = r0; r < r1; ++r) {
        const T dual = dual_prox((2 * ts[r] - axs[r]) + inv * ys[r], ls[r], us[r], s);
        yt[r] = dual;
        if (measure) {
          const double dy = static_cast<double>(ys[r]) - static_cast<double>(dual);
          square += dy * dy;
          product += dy * (static_cast<double>(axs[r]) - static_cast<double>(ts[r]));
        }
        yn[r] = ct * dual - cx * ys[r] + c0 * y0s[r];
        an[r] = ct * ts[r] - cx * axs[r] + c0 * a0s[r];
      }
      squares[at::get_thread_num()] += square;
      products[at::get_thread_num()] += product;
    });
  });
  double square = 0, product = 0;
  for (size_t i = 0; i < squares.size(); ++i) square += squares[i], product += products[i];
  auto sums = torch::tensor({square, product}, torch::TensorOptions().dtype(torch::kFloat64)).to(y.scalar_type());
  return {y_t, y_next, ax_next, sums};
}

// out = c + A^T w, the check's gradient, into `out` (the step's scratch: the check needs no other column vector).
void gradient(torch::Tensor w, torch::Tensor c, torch::Tensor col_ptr, torch::Tensor row_idx, torch::Tensor vals,
              torch::Tensor out) {
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "gradient", [&] {
    const auto A = columns<scalar_t>(col_ptr, row_idx, vals, w.size(0));
    const scalar_t *ws = w.data_ptr<scalar_t>(), *cs = c.data_ptr<scalar_t>();
    scalar_t* os = out.data_ptr<scalar_t>();
    at::parallel_for(0, c.size(0), 1 << 14, [&](int64_t j0, int64_t j1) {
      A.dots(j0, j1, ws, [=](int64_t j, scalar_t g) { os[j] = cs[j] + g; });
    });
  });
}

// A x, by columns into per-thread copies of A x (the check's products: no temporaries).
torch::Tensor times(torch::Tensor x, torch::Tensor col_ptr, torch::Tensor row_idx, torch::Tensor vals, int64_t m) {
  Accumulators acc(m, x.options(), true);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "times", [&] {
    const auto A = columns<scalar_t>(col_ptr, row_idx, vals, m);
    const scalar_t* xs = x.data_ptr<scalar_t>();
    at::parallel_for(0, x.size(0), 1 << 14,
                     [&](int64_t j0, int64_t j1) { scatter(A, xs, j0, j1, acc.mine<scalar_t>()); });
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

// x = P_C(v), by `steps` Newton steps per block from tau or (`exact`) exact_tau; returns the blocks' tau.
torch::Tensor project(torch::Tensor v, torch::Tensor x, BlockArgs blocks, torch::Tensor tau, int64_t steps,
                      bool exact) {
  auto tau_out = torch::empty_like(tau);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "project", [&] {
    const auto B = block_data<scalar_t>(blocks, v.size(0));
    const scalar_t* vs = v.data_ptr<scalar_t>();
    scalar_t *xs = x.data_ptr<scalar_t>(), *out = tau_out.data_ptr<scalar_t>();
    for_chunks(B, [&](int64_t k) {
      thresholds(vs, B, k, tau.data_ptr<scalar_t>(), out, steps, exact);
      each_block(B, k, [&](int64_t b, int64_t a, int64_t e, const auto& clip) {
        for (int64_t j = a; j < e; ++j) xs[j] = clip(j, vs[j] - out[b]);
      });
    });
  });
  return tau_out;
}

// min_{x in C_i} g^T x per block (the bound's and the Farkas tests' block values), for finite lower bounds: a box
// block takes each column's better bound (-inf where that bound is infinite); a block with a sum starts at x = l and
// spends the room r - sum l on its columns in order of increasing g (only those with g < 0 under sum <= r), each up
// to u - l. Exact; the order comes from a sort of the block's columns (per-thread buffer).
torch::Tensor block_minima(torch::Tensor g, BlockArgs blocks) {
  auto out = torch::empty({blocks[1].size(0)}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "block_minima", [&] {
    using T = scalar_t;
    const auto B = block_data<T>(blocks, g.size(0));
    const T* gs = g.data_ptr<T>();
    T* os = out.data_ptr<T>();
    at::parallel_for(0, B.nb, 1, [&](int64_t b0, int64_t b1) {
      std::vector<int64_t> order;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t a = B.start(b), e = B.start(b + 1);
        T value = 0;
        if (B.is_box[b]) {
          for (int64_t j = a; j < e; ++j)
            value += gs[j] > 0 ? gs[j] * B.lo(j) : (gs[j] < 0 ? gs[j] * B.hi(j) : T(0));
          os[b] = value;
          continue;
        }
        T room = B.rhs[b];
        order.clear();
        for (int64_t j = a; j < e; ++j) {
          value += gs[j] * B.lo(j);
          room -= B.lo(j);
          if (!B.is_le[b] || gs[j] < 0) order.push_back(j);
        }
        std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return gs[i] < gs[j] || (gs[i] == gs[j] && i < j); });
        for (int64_t j : order) {
          if (!(room > 0)) break;
          const T take = std::min(B.hi(j) - B.lo(j), room);
          value += gs[j] * take;
          room -= take;
        }
        os[b] = value;
      }
    });
  });
  return out;
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

// repair.repair_moves in place, on one process: the same passes (raises, floor moves, deficit moves) under the same
// rules and constants (passed from repair.py), each pass's per-column work fused per block, the products A z into
// per-thread copies, the row vectors plain loops; returns A x after it. A x is kept current through every change of x
// (A times the change, on the columns changed). A pass changes only blocks with a deficit and, where a floor is
// unmet, blocks holding its rows (raises go to floor-helping or deficit columns, the floor moves take within the
// blocks they give to, and every move keeps block sums), so its sweeps visit those blocks alone (``scope``); a deficit
// move visits the stuck blocks, then the blocks with a column in the rows it wants freed (found through A's rows):
// the passes' point, to the rounding of A x.
template <typename T>
struct Moves {
  Columns<T> A;
  BlockData<T> B;
  const T* lower;  // the rows' sides
  const T* upper;
  const bool* eq;  // per block: sum x == r (nullptr: no such block)
  int64_t m, n;
  torch::TensorOptions options;
  T floor_ulps;
  const int32_t* row_ptr;  // A's rows: row r's columns are row_cols[row_ptr[r]..row_ptr[r + 1]-1] (any order)
  const int32_t* row_cols;
  std::vector<T> ax, slack, need, block_room, deficit;  // the state at the current x (rows(), state_blocks())
  const std::vector<int64_t>* scope = nullptr;  // the blocks (ascending) the sweeps visit; nullptr: all

  T col_max(int64_t j, const std::vector<T>& per_row) const {  // max over column j's rows of per_row (0: no rows)
    if (A.col_ptr == nullptr) return A.row_idx[j] < m ? per_row[A.row_idx[j]] : T(0);
    if (A.col_ptr[j] == A.col_ptr[j + 1]) return T(0);
    T out = per_row[A.row_idx[A.col_ptr[j]]];
    for (int32_t k = A.col_ptr[j] + 1; k < A.col_ptr[j + 1]; ++k) out = std::max(out, per_row[A.row_idx[k]]);
    return out;
  }
  T col_min(int64_t j, const std::vector<T>& per_row) const { return A.row_min(j, per_row.data()); }

  template <typename F>  // f(b, a, e) for every block b (columns a..e-1) in scope, blocks in parallel
  void blocks(F f) const {
    const int64_t count = scope == nullptr ? B.nb : static_cast<int64_t>(scope->size());
    at::parallel_for(0, count, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = scope == nullptr ? i : (*scope)[i];
        f(b, B.start(b), B.start(b + 1));
      }
    });
  }

  template <typename F>  // f(j) for every column in scope, in parallel
  void cols(F f) const {
    if (scope != nullptr) return blocks([&](int64_t, int64_t a, int64_t e) {
      for (int64_t j = a; j < e; ++j) f(j);
    });
    at::parallel_for(0, n, 1 << 14, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) f(j);
    });
  }

  template <typename F>  // A z with z_j = f(j) on the columns in scope, 0 elsewhere
  std::vector<T> times(F f) const {
    Accumulators acc(m, options);
    const auto add = [&](int64_t j0, int64_t j1) {
      T* out = acc.mine<T>();
      for (int64_t j = j0; j < j1; ++j) {
        const T z = f(j);
        if (z != 0) A.add_to(j, z, out);
      }
    };
    if (scope == nullptr)
      at::parallel_for(0, n, 1 << 14, add);
    else
      blocks([&](int64_t, int64_t a, int64_t e) { add(a, e); });
    const auto sum = acc.sum();
    const T* s = sum.template data_ptr<T>();
    return std::vector<T>(s, s + m);
  }

  // x_j = f(b, j) on the columns in scope (f reads x_j at most), A x kept current: ax += A (new x - old x)
  template <typename F>
  void update(T* x, F f) {
    Accumulators acc(m, options);
    blocks([&](int64_t b, int64_t a, int64_t e) {
      T* out = acc.mine<T>();
      for (int64_t j = a; j < e; ++j) {
        const T z = f(b, j), change = z - x[j];
        x[j] = z;
        if (change != 0) A.add_to(j, change, out);
      }
    });
    const auto sum = acc.sum();
    const T* s = sum.template data_ptr<T>();
    for (int64_t r = 0; r < m; ++r) ax[r] += s[r];
  }

  T floor_met(int64_t r) const {  // repair.floor_met: l (1 + floor_ulps eps), where a floor counts as met
    return lower[r] * (1 + floor_ulps * std::numeric_limits<T>::epsilon());
  }

  // the rows' slack (row_slack) and floor needs (floor_need) at A x; the largest need
  T rows() {
    const T eps = std::numeric_limits<T>::epsilon();
    T need_max = 0;
    for (int64_t r = 0; r < m; ++r) {
      const T s = std::max(upper[r] - ax[r], T(0));
      slack[r] = s > (std::isfinite(upper[r]) ? 1024 * eps * upper[r] : T(0)) ? s : T(0);
      need[r] = lower[r] > 0 ? std::max(floor_met(r) - ax[r], T(0)) : T(0);
      need_max = std::max(need_max, need[r]);
    }
    return need_max;
  }

  // the room and equality deficit of the blocks in scope
  void state_blocks(const T* x) {
    const T eps = std::numeric_limits<T>::epsilon();
    blocks([&](int64_t b, int64_t a, int64_t e) {
      T sum = 0;
      for (int64_t j = a; j < e; ++j) sum += x[j];
      const T gap = std::max(B.rhs[b] - sum, T(0));
      block_room[b] = B.is_box[b] ? std::numeric_limits<T>::infinity() : gap;
      deficit[b] = eq != nullptr && eq[b] && gap > 1024 * eps * B.rhs[b] ? gap : T(0);
    });
  }

  // delta scaled per column so that A delta <= slack on every row (a column's factor is its tightest row's)
  void row_fit(std::vector<T>& delta) const {
    std::vector<T> factor = times([&](int64_t j) { return delta[j]; });
    for (int64_t r = 0; r < m; ++r)
      factor[r] = factor[r] > slack[r] ? slack[r] / std::max(factor[r], T(1e-300)) : T(1);
    cols([&](int64_t j) {
      if (delta[j] != 0) delta[j] *= std::min(std::max(col_min(j, factor), T(0)), T(1));
    });
  }

  // per block, the columns of least key(j) among mask (ties all) into picked; their count
  template <typename K>
  void best(K key, const std::vector<char>& mask, std::vector<char>& picked, std::vector<T>& count) const {
    blocks([&](int64_t b, int64_t a, int64_t e) {
      T low = std::numeric_limits<T>::infinity();
      for (int64_t j = a; j < e; ++j)
        if (mask[j]) low = std::min(low, key(j));
      T k = 0;
      for (int64_t j = a; j < e; ++j) {
        picked[j] = mask[j] && key(j) == low;
        k += picked[j];
      }
      count[b] = k;
    });
  }

  // the blocks (ascending) with a column in one of ``rows`` and no mark yet, marked now (block_of: each column's)
  std::vector<int64_t> blocks_on(const std::vector<int64_t>& rows, const std::vector<int64_t>& block_of,
                                 std::vector<char>& marked) const {
    std::vector<int64_t> out;
    for (const int64_t r : rows)
      for (int32_t k = row_ptr[r]; k < row_ptr[r + 1]; ++k) {
        const int64_t b = block_of[row_cols[k]];
        if (!marked[b]) {
          marked[b] = 1;
          out.push_back(b);
        }
      }
    std::sort(out.begin(), out.end());
    return out;
  }

  // each block's donation sum(give) onto its receivers (equal shares within their room, fit to the rows), the
  // donations cut to what was placed: x - kept give + share, at least 0 (sum x kept)
  void move(T* x, std::vector<T>& give, const std::vector<char>& receivers, const std::vector<T>& count,
            const std::vector<T>& room, std::vector<T>& share) {
    std::vector<T> total(B.nb);
    blocks([&](int64_t b, int64_t a, int64_t e) {
      T t = 0;
      for (int64_t j = a; j < e; ++j) t += give[j];
      total[b] = t;
      const T each = t / std::max(count[b], T(1));
      for (int64_t j = a; j < e; ++j) share[j] = receivers[j] ? std::min(room[j], each) : T(0);
    });
    row_fit(share);
    blocks([&](int64_t b, int64_t a, int64_t e) {
      T placed = 0;
      for (int64_t j = a; j < e; ++j) placed += share[j];
      total[b] = total[b] > 0 ? std::min(std::max(placed / std::max(total[b], T(1e-300)), T(0)), T(1)) : T(0);
    });
    update(x, [&](int64_t b, int64_t j) { return std::max(x[j] - give[j] * total[b] + share[j], T(0)); });
  }
};

torch::Tensor repair_moves(torch::Tensor x, torch::Tensor c, torch::Tensor col_ptr, torch::Tensor row_idx,
                           torch::Tensor vals, BlockArgs blocks, torch::Tensor row_lower, torch::Tensor row_upper,
                           torch::Tensor row_ptr, torch::Tensor row_cols, torch::Tensor equality, int64_t passes,
                           double min_progress, int64_t stall_passes, int64_t relay_depth, int64_t floor_ulps) {
  const int64_t m = row_upper.size(0), n = x.size(0);
  torch::Tensor out = torch::empty({m}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "repair_moves", [&] {
    using T = scalar_t;
    constexpr T inf = std::numeric_limits<T>::infinity();
    Moves<T> mv{columns<T>(col_ptr, row_idx, vals, m), block_data<T>(blocks, n), row_lower.data_ptr<T>(),
                row_upper.data_ptr<T>(), equality.numel() ? equality.data_ptr<bool>() : nullptr, m, n, x.options(),
                static_cast<T>(floor_ulps), row_ptr.data_ptr<int32_t>(), row_cols.data_ptr<int32_t>()};
    const auto& B = mv.B;
    const int64_t nb = B.nb;
    mv.slack.resize(m);
    mv.need.resize(m);
    mv.block_room.resize(nb);
    mv.deficit.resize(nb);
    T* xs = x.data_ptr<T>();
    const T* cs = c.data_ptr<T>();
    mv.ax = mv.times([&](int64_t j) { return xs[j]; });
    std::vector<T> room(n), gain(n), cap(n), raised(n), give(n), share(n), count(nb);
    std::vector<char> open(n), mask(n), picked(n);
    std::vector<int64_t> open_count(nb);
    const auto refresh_blocks = [&] {  // in scope: the blocks' state, each column's room and openness (room, all
      mv.state_blocks(xs);              // its <= rows with slack)
      mv.blocks([&](int64_t b, int64_t a, int64_t e) {
        int64_t k = 0;
        for (int64_t j = a; j < e; ++j) {
          room[j] = std::max(B.hi(j) - xs[j], T(0));
          open[j] = mv.A.all_rows_positive(j, mv.slack.data()) & (room[j] > 0);
          k += open[j];
        }
        open_count[b] = k;
      });
    };
    const auto refresh = [&] {  // the rows' state, then the blocks' in scope
      mv.rows();
      refresh_blocks();
    };
    std::vector<int64_t> block_of;  // each column's block (built for the first pass that needs it)
    const auto map_blocks = [&] {
      if (!block_of.empty()) return;
      block_of.resize(n);
      const auto* saved = mv.scope;
      mv.scope = nullptr;
      mv.blocks([&](int64_t b, int64_t a, int64_t e) { std::fill(block_of.begin() + a, block_of.begin() + e, b); });
      mv.scope = saved;
    };
    std::vector<int64_t> deficient;  // the blocks with a deficit (ascending)
    const auto collect = [&] {       // after a refresh of every block
      deficient.clear();
      for (int64_t b = 0; b < nb; ++b)
        if (mv.deficit[b] > 0) deficient.push_back(b);
    };
    const auto floor_gain = [&] {  // g_j = sum of a_rj over the unmet floors of column j
      std::vector<T> unmet(m);
      for (int64_t r = 0; r < m; ++r) unmet[r] = mv.need[r] > 0 ? T(1) : T(0);
      mv.cols([&](int64_t j) { gain[j] = mv.A.dot(j, unmet.data()); });
    };
    const auto surplus = [&] {  // what a floor row may lose and stay met (repair.floor_surplus; inf without a floor)
      std::vector<T> s(m);
      for (int64_t r = 0; r < m; ++r) s[r] = mv.lower[r] > 0 ? std::max(mv.ax[r] - mv.floor_met(r), T(0)) : inf;
      return s;
    };
    const auto share_of = [&](const std::vector<T>& wanted, const std::vector<T>& held) {  // repair._Moves.share
      std::vector<T> s(m);
      for (int64_t r = 0; r < m; ++r)
        s[r] = wanted[r] > 0 ? std::min(wanted[r] / std::max(held[r], T(1e-300)), T(1)) : T(0);
      return s;
    };
    const auto spread_over = [&](const std::vector<T>& amount, const std::vector<char>& on, std::vector<T>& to) {
      mv.blocks([&](int64_t b, int64_t a, int64_t e) {  // each block's amount in equal shares over its `on` columns
        T k = 0;
        for (int64_t j = a; j < e; ++j) k += on[j];
        for (int64_t j = a; j < e; ++j) to[j] = on[j] ? amount[b] / std::max(k, T(1)) : T(0);
      });
    };
    double last = inf;
    int64_t stalled = 0;
    std::vector<int64_t> touched;  // the blocks a pass with an unmet floor can change
    for (int64_t pass = 0; pass < passes; ++pass) {
      mv.scope = nullptr;
      if (pass == 0) {
        mv.state_blocks(xs);
        collect();
      }
      // the pass works on the blocks with a deficit and, where a floor is unmet, the blocks holding its rows (a
      // floor's raises and moves go to columns in its rows, and take from the same blocks); on every block where
      // the unmet rows hold more entries than a quarter of the columns (global floors: listing them costs more)
      mv.scope = &deficient;
      if (mv.rows() > 0) {
        std::vector<int64_t> unmet;
        int64_t entries = 0;
        for (int64_t r = 0; r < m; ++r)
          if (mv.need[r] > 0) {
            unmet.push_back(r);
            entries += mv.row_ptr[r + 1] - mv.row_ptr[r];
          }
        if (4 * entries > n) {
          mv.scope = nullptr;
        } else {
          map_blocks();
          std::vector<char> marked(nb, 0);
          for (const int64_t b : deficient) marked[b] = 1;
          const std::vector<int64_t> holding = mv.blocks_on(unmet, block_of, marked);
          touched.resize(deficient.size() + holding.size());
          std::merge(deficient.begin(), deficient.end(), holding.begin(), holding.end(), touched.begin());
          mv.scope = &touched;
        }
      }
      refresh_blocks();
      if (mv.scope == nullptr) {
        collect();
      } else {
        deficient.erase(std::remove_if(deficient.begin(), deficient.end(), [&](int64_t b) { return !(mv.deficit[b] > 0); }),
                        deficient.end());
      }
      T left_total = 0, need_max = 0, deficit_max = 0;
      bool any_stuck = false;
      for (int64_t b = 0; b < nb; ++b) {
        left_total += mv.deficit[b];
        deficit_max = std::max(deficit_max, mv.deficit[b]);
        any_stuck |= mv.deficit[b] > 0 && (mv.eq == nullptr || open_count[b] == 0);
      }
      for (int64_t r = 0; r < m; ++r) {
        left_total += mv.need[r];
        need_max = std::max(need_max, mv.need[r]);
      }
      stalled = left_total > min_progress * last ? stalled + 1 : 0;  // (a move pays off one pass later)
      if (!(left_total > 0) || stalled == stall_passes) break;
      last = std::min(last, static_cast<double>(left_total));
      // (1) raises: floor-helping columns toward the needs, then the cheapest toward the deficits
      floor_gain();
      mv.blocks([&](int64_t b, int64_t a, int64_t e) {
        for (int64_t j = a; j < e; ++j) mask[j] = open[j] && gain[j] > 0 && mv.block_room[b] > 0;
      });
      const auto per_gain = [&](int64_t j) { return cs[j] / std::max(gain[j], T(1e-300)); };
      mv.best(per_gain, mask, picked, count);
      mv.blocks([&](int64_t b, int64_t a, int64_t e) {
        for (int64_t j = a; j < e; ++j) {
          const T capped = picked[j] ? std::min(room[j], mv.block_room[b] / std::max(count[b], T(1))) : T(0);
          // unbounded: about what the column alone needs to meet its floors, need / (gain / floors)
          cap[j] = std::isfinite(capped) ? capped
                                         : (picked[j] ? mv.col_max(j, mv.need) / std::max(gain[j], T(1e-300)) : T(0));
        }
      });
      std::vector<T> theta = mv.times([&](int64_t j) { return cap[j]; });
      for (int64_t r = 0; r < m; ++r)
        theta[r] = mv.need[r] > 0 ? std::min(mv.need[r] / std::max(theta[r], T(1e-300)), T(1)) : T(0);
      std::vector<T> left(nb);
      mv.blocks([&](int64_t b, int64_t a, int64_t e) {
        T sum = 0;
        for (int64_t j = a; j < e; ++j) {
          raised[j] = cap[j] * mv.col_max(j, theta);
          sum += raised[j];
        }
        left[b] = std::max(mv.deficit[b] - sum, T(0));
        for (int64_t j = a; j < e; ++j) mask[j] = open[j] && left[b] > 0 && room[j] - raised[j] > 0;
      });
      mv.best([&](int64_t j) { return cs[j]; }, mask, picked, count);
      mv.blocks([&](int64_t b, int64_t a, int64_t e) {
        for (int64_t j = a; j < e; ++j)
          raised[j] += picked[j] ? std::min(room[j] - raised[j], left[b] / std::max(count[b], T(1))) : T(0);
      });
      mv.row_fit(raised);
      mv.update(xs, [&](int64_t, int64_t j) { return xs[j] + raised[j]; });
      if (deficit_max > 0) {  // what the cheapest columns could not take: equal shares over the open columns
        refresh();
        spread_over(mv.deficit, open, raised);
        mv.cols([&](int64_t j) { raised[j] = std::min(room[j], raised[j]); });
        mv.row_fit(raised);
        mv.update(xs, [&](int64_t, int64_t j) { return xs[j] + raised[j]; });
      }
      // (2) floor moves: from columns of lower gain to the block's open column of highest gain
      if (need_max > 0) {
        refresh();
        floor_gain();
        mv.cols([&](int64_t j) { mask[j] = open[j] && gain[j] > 0; });
        mv.best([&](int64_t j) { return -gain[j]; }, mask, picked, count);
        std::vector<T> total(nb);
        mv.blocks([&](int64_t b, int64_t a, int64_t e) {
          T top = -inf;
          for (int64_t j = a; j < e; ++j)
            if (picked[j]) top = std::max(top, gain[j]);
          T t = 0;
          for (int64_t j = a; j < e; ++j) {
            give[j] = gain[j] < top ? xs[j] : T(0);
            t += give[j];
          }
          total[b] = t;
        });
        // what a full move adds to each row; the share of it that meets the row's need, the share a floor it
        // lowers can give up (it keeps its surplus)
        mv.blocks([&](int64_t b, int64_t a, int64_t e) {
          const T each = total[b] / std::max(count[b], T(1));
          for (int64_t j = a; j < e; ++j) share[j] = (picked[j] ? each : T(0)) - give[j];
        });
        std::vector<T> full = mv.times([&](int64_t j) { return share[j]; });
        std::vector<T> theta(m), limit(m);
        const std::vector<T> spare = surplus();
        for (int64_t r = 0; r < m; ++r) {
          theta[r] = mv.need[r] > 0 && full[r] > 0 ? std::min(mv.need[r] / std::max(full[r], T(1e-300)), T(1)) : T(0);
          limit[r] = full[r] < 0 ? std::min(spare[r] / std::max(-full[r], T(1e-300)), T(1)) : T(1);
        }
        mv.blocks([&](int64_t b, int64_t a, int64_t e) {
          T raise_to = 0, keep_to = 1;
          for (int64_t j = a; j < e; ++j) {
            if (picked[j]) raise_to = std::max(raise_to, mv.col_max(j, theta));
            if (give[j] > 0 || picked[j]) keep_to = std::min(keep_to, mv.col_min(j, limit));
          }
          const T frac = std::min(raise_to, keep_to);
          for (int64_t j = a; j < e; ++j) give[j] *= frac;
        });
        mv.move(xs, give, picked, count, room, share);
      }
      // (3) deficit moves: blocks with mass in the tight rows of a stuck equality block move it to open columns; the
      // sweeps visit the stuck blocks, then the holders: the blocks with a column in a wanted row
      if (any_stuck) {
        mv.rows();
        mv.scope = &deficient;
        refresh_blocks();
        std::vector<int64_t> stuck, holders;
        for (const int64_t b : deficient)
          if (mv.deficit[b] > 0 && open_count[b] == 0) stuck.push_back(b);
        // what the stuck blocks would put in each tight row: each column with room could take the whole deficit
        mv.scope = &stuck;
        mv.blocks([&](int64_t b, int64_t a, int64_t e) {
          for (int64_t j = a; j < e; ++j) share[j] = std::min(room[j], mv.deficit[b]);
        });
        std::vector<T> wanted = mv.times([&](int64_t j) { return share[j]; });
        for (int64_t r = 0; r < m; ++r) wanted[r] = mv.slack[r] > 0 ? T(0) : wanted[r];
        map_blocks();
        std::vector<char> covered(m, 0), marked(nb, 0);
        const auto cover = [&] {  // the holders of the rows wanted so far, their state and receivers (count 0: none)
          std::vector<int64_t> rows;
          for (int64_t r = 0; r < m; ++r)
            if (wanted[r] > 0 && !covered[r]) {
              covered[r] = 1;
              rows.push_back(r);
            }
          std::vector<int64_t> added = mv.blocks_on(rows, block_of, marked);
          mv.scope = &added;
          refresh_blocks();
          mv.best([&](int64_t j) { return cs[j]; }, open, picked, count);
          std::vector<int64_t> all(holders.size() + added.size());
          std::merge(holders.begin(), holders.end(), added.begin(), added.end(), all.begin());
          holders.swap(all);
          mv.scope = &holders;
        };
        cover();
        for (int64_t depth = 0; depth < relay_depth; ++depth) {  // blocks without an open column pass the wish on
          const std::vector<T> theta = share_of(wanted, mv.ax);  // (what x puts in each row: x >= 0)
          mv.blocks([&](int64_t b, int64_t a, int64_t e) {
            T relayed = 0, k = 0;
            for (int64_t j = a; j < e; ++j) {
              give[j] = count[b] == 0 && xs[j] > 0 ? xs[j] * mv.col_max(j, theta) : T(0);  // (the relayed mass)
              relayed += give[j];
            }
            for (int64_t j = a; j < e; ++j) k += room[j] > 0 && give[j] == 0;
            for (int64_t j = a; j < e; ++j) share[j] = room[j] > 0 && give[j] == 0 ? relayed / std::max(k, T(1)) : T(0);
          });
          const std::vector<T> wish = mv.times([&](int64_t j) { return share[j]; });
          for (int64_t r = 0; r < m; ++r) wanted[r] = std::max(wanted[r], mv.slack[r] > 0 ? T(0) : wish[r]);
          cover();
        }
        mv.blocks([&](int64_t b, int64_t a, int64_t e) {  // the movable mass: of blocks with an open column
          for (int64_t j = a; j < e; ++j) give[j] = count[b] > 0 ? xs[j] : T(0);
        });
        const std::vector<T> theta = share_of(wanted, mv.times([&](int64_t j) { return give[j]; }));
        mv.cols([&](int64_t j) { give[j] *= mv.col_max(j, theta); });
        const std::vector<T> spare = surplus();
        std::vector<T> limit = mv.times([&](int64_t j) { return give[j]; });
        for (int64_t r = 0; r < m; ++r)
          limit[r] = limit[r] > 0 ? std::min(spare[r] / std::max(limit[r], T(1e-300)), T(1)) : T(1);
        mv.blocks([&](int64_t b, int64_t a, int64_t e) {
          T frac = 1;
          for (int64_t j = a; j < e; ++j)
            if (give[j] > 0) frac = std::min(frac, mv.col_min(j, limit));
          for (int64_t j = a; j < e; ++j) give[j] *= frac;
        });
        mv.move(xs, give, picked, count, room, share);
      }
    }
    mv.scope = nullptr;
    // a deficit left: placed over the equality block's columns in proportion to min(room, deficit), rows regardless
    std::vector<T> left(nb), scale(nb);
    mv.blocks([&](int64_t b, int64_t a, int64_t e) {
      left[b] = scale[b] = 0;
      if (mv.eq == nullptr || !mv.eq[b]) return;
      T sum = 0;
      for (int64_t j = a; j < e; ++j) sum += xs[j];
      left[b] = std::max(B.rhs[b] - sum, T(0));
      T total = 0;
      for (int64_t j = a; j < e; ++j) total += std::min(std::max(B.hi(j) - xs[j], T(0)), left[b]);
      scale[b] = total > 0 ? left[b] / std::max(total, T(1e-300)) : T(0);
    });
    mv.update(xs, [&](int64_t b, int64_t j) {
      return left[b] > 0 ? xs[j] + std::min(std::max(B.hi(j) - xs[j], T(0)), left[b]) * scale[b] : xs[j];
    });
    std::copy(mv.ax.begin(), mv.ax.end(), out.data_ptr<T>());
  });
  return out;
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
