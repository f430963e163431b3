// The fused loss's CUDA kernels as block programs: each kernel is one function over one thread block,
// written against a small Block interface, so that the same code runs on a GPU (DeviceBlock in
// packing_loss_kernels.cu: one CUDA thread per thread index) and on the CPU (EmulatedBlock below: the
// block's threads one after another), where the tests check it against the CPU implementation
// (clamp::testing::packing_loss_emulating_gpu). Plain C++ under the host compiler; under nvcc the
// programs are __host__ __device__.
//
// The Block interface, used in uniform control flow (every thread of a block makes the same calls):
//   block.each(f)  every thread t of the block runs f(t, threads); then the block synchronises
//   block.sum(f)   every thread contributes f(t, threads) (a double or Totals<N>); every thread gets the
//                  block's total
//   block.once(f)  one thread runs f(); nothing it writes is read again by the same kernel
#pragma once

#include <cstdint>

#include "loss/packing_loss_math.h"

namespace clamp::cuda {

// N sums reduced together (the pair pass keeps four per row).
template <int N>
struct Totals {
  double value[N] = {};
  CLAMP_HOST_DEVICE Totals& operator+=(const Totals& other) {
    for (int k = 0; k < N; ++k) value[k] += other.value[k];
    return *this;
  }
};

template <typename T>
struct NormaliseArgs {  // steps 1-5, one block per image
  const T* z;
  const T* mean;
  int64_t m, b, d;
  double rs;
  T* unit;
  T* norms;
  T* centres;
  T* radii;
};

template <typename T>
struct PairPassArgs {  // steps 6-9, one block per row of the b x b pairs
  const T* gram;
  const T* squared_norms;  // the Gram diagonal
  const T* radii;
  int64_t b;
  loss_math::PairConstants<T> constants;
  double lw1, lw0;
  T* pair_weights;     // [b, b]
  T* radius_grads;     // [b]: dE/dr_i + lw0
  double* row_totals;  // [3, b]: pair energy (times lw1), distance sum, contacts
};

template <typename T>
struct BackwardArgs {  // backward of steps 2-5, one block per row of z
  const T* unit;
  const T* norms;
  const T* centres;
  const T* grad_centres;
  const double* spread_coefficient;
  int64_t m, b, d;
  double scale;  // dL/dE
  T* out;
};

template <class Block, typename T>
CLAMP_HOST_DEVICE void normalise_and_group_block(Block& block, const NormaliseArgs<T>& a, int64_t i) {
  for (int64_t v = 0; v < a.m; ++v) {
    const int64_t row = v * a.b + i;
    const T* zr = a.z + row * a.d;
    T* u = a.unit + row * a.d;
    const double squared = block.sum([&](int64_t t, int64_t threads) {
      double partial = 0;
      for (int64_t c = t; c < a.d; c += threads) {
        const T y = zr[c] - a.mean[c];
        u[c] = y;
        partial += double(y) * double(y);
      }
      return partial;
    });
    const double norm = loss_math::square_root(squared);
    block.once([&] { a.norms[row] = static_cast<T>(norm); });
    const T inverse = static_cast<T>(1.0 / (norm > loss_math::kNormFloor ? norm : loss_math::kNormFloor));
    block.each([&](int64_t t, int64_t threads) {
      for (int64_t c = t; c < a.d; c += threads) u[c] *= inverse;
    });
  }
  // Each thread owns columns c: the centre and the deviations of its columns over the m views.
  const double deviations = block.sum([&](int64_t t, int64_t threads) {
    double partial = 0;
    for (int64_t c = t; c < a.d; c += threads) {
      double sum = 0;
      for (int64_t v = 0; v < a.m; ++v) sum += double(a.unit[(v * a.b + i) * a.d + c]);
      const T centre = static_cast<T>(sum / double(a.m));
      a.centres[i * a.d + c] = centre;
      for (int64_t v = 0; v < a.m; ++v) {
        const double deviation = double(a.unit[(v * a.b + i) * a.d + c]) - double(centre);
        partial += deviation * deviation;
      }
    }
    return partial;
  });
  block.once([&] { a.radii[i] = static_cast<T>(loss_math::radius_from_spread(deviations, a.m, a.d, a.rs)); });
}

template <class Block, typename T>
CLAMP_HOST_DEVICE void pair_pass_block(Block& block, const PairPassArgs<T>& a, int64_t i) {
  const T* gi = a.gram + i * a.b;
  T* wi = a.pair_weights + i * a.b;
  const T sqi = a.squared_norms[i], ri = a.radii[i];
  const Totals<4> totals = block.sum([&](int64_t t, int64_t threads) {
    Totals<4> partial;  // energy, distance sum, dE/dr_i, contacts
    for (int64_t j = t; j < a.b; j += threads) {
      if (j == i) {
        wi[j] = T(0);
        continue;
      }
      const T distance = loss_math::centre_distance(sqi, a.squared_norms[j], gi[j]);
      partial.value[1] += double(distance);
      const loss_math::PairTerm<T> term = loss_math::pair_term(distance, loss_math::contact_range(ri, a.radii[j]), a.constants);
      wi[j] = term.weight;
      partial.value[0] += term.energy;
      partial.value[2] += term.radius_grad;
      partial.value[3] += term.contact ? 1.0 : 0.0;
    }
    return partial;
  });
  block.once([&] {
    a.row_totals[i] = a.lw1 * totals.value[0];
    a.row_totals[a.b + i] = totals.value[1];
    a.row_totals[2 * a.b + i] = totals.value[3];
    a.radius_grads[i] = static_cast<T>(totals.value[2] + a.lw0);
  });
}

template <class Block, typename T>
CLAMP_HOST_DEVICE void backward_rows_block(Block& block, const BackwardArgs<T>& a, int64_t row) {
  const int64_t i = row % a.b;
  const T* u = a.unit + row * a.d;
  const T* ci = a.centres + i * a.d;
  const T* gci = a.grad_centres + i * a.d;
  const double coefficient = a.spread_coefficient[i];
  const double radial_sum = block.sum([&](int64_t t, int64_t threads) {
    double partial = 0;
    for (int64_t c = t; c < a.d; c += threads)
      partial += double(u[c]) * loss_math::unit_gradient(double(gci[c]), a.m, coefficient, double(u[c]), double(ci[c]));
    return partial;
  });
  const double norm = double(a.norms[row]);
  const bool above_floor = norm > loss_math::kNormFloor;
  const double radial = above_floor ? radial_sum : 0.0;  // the floor is a constant: no radial term below it
  const double factor = a.scale / (above_floor ? norm : loss_math::kNormFloor);
  T* o = a.out + row * a.d;
  block.each([&](int64_t t, int64_t threads) {
    for (int64_t c = t; c < a.d; c += threads) {
      const double g = loss_math::unit_gradient(double(gci[c]), a.m, coefficient, double(u[c]), double(ci[c]));
      o[c] = static_cast<T>((g - double(u[c]) * radial) * factor);
    }
  });
}

// The CPU stand-in for a launch: every block of the grid, its threads one after another. Used by the
// tests to run the kernels' code without a GPU; it checks their logic, not their speed or concurrency.
struct EmulatedBlock {
  int64_t threads;
  template <class F>
  void each(F f) {
    for (int64_t t = 0; t < threads; ++t) f(t, threads);
  }
  template <class F>
  auto sum(F f) {
    auto total = f(0, threads);
    for (int64_t t = 1; t < threads; ++t) total += f(t, threads);
    return total;
  }
  template <class F>
  void once(F f) {
    f();
  }
};

}  // namespace clamp::cuda
