// The torch backend's CPU gather -> GEMM -> scatter-add in a loop that torch ops cannot express: tiled by the
// rows it scatters into. For each tile of output rows (a span small enough to stay in cache) every kernel
// offset's pairs that land in the tile are gathered, multiplied and added before the next tile starts, so
// the tile's sums and the input rows near it are read from cache by all K^3 offsets instead of streaming
// the whole input and output once per offset. Rows are copied by memcpy and added by a plain vectorised
// loop (index_select and index_add_ cost several times as much per 64-channel row); the GEMMs are ATen's,
// the same BLAS as torch.mm. Within one offset no two pairs share a scatter row, so a step's rows are
// split across threads without atomics and every sum is taken in the same order on any thread count.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

namespace {

// Rows per parallel task: fewer and the task start costs more than a row's copy.
constexpr int64_t kGrainRows = 64;

template <typename scalar_t>
void gather_rows(const at::Tensor& source, const int64_t* index, int64_t count, at::Tensor& rows) {
  const int64_t width = source.size(1);
  const scalar_t* from = source.data_ptr<scalar_t>();
  scalar_t* to = rows.data_ptr<scalar_t>();
  at::parallel_for(0, count, kGrainRows, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      std::memcpy(to + row * width, from + index[row] * width, width * sizeof(scalar_t));
    }
  });
}

template <typename scalar_t>
void scatter_add_rows(const at::Tensor& rows, const int64_t* index, int64_t count, at::Tensor& out) {
  const int64_t width = out.size(1);
  const scalar_t* from = rows.data_ptr<scalar_t>();
  scalar_t* to = out.data_ptr<scalar_t>();
  at::parallel_for(0, count, kGrainRows, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      scalar_t* __restrict__ target = to + index[row] * width;
      const scalar_t* __restrict__ value = from + row * width;
#pragma omp simd
      for (int64_t channel = 0; channel < width; ++channel) target[channel] += value[channel];
    }
  });
}

// [C_in, C_out] weight of one offset from [C_out, K^3, C_in] filters, or [C_out, C_in] when transposed
// (the input gradient): strided views that the BLAS reads as they are.
at::Tensor offset_weight(const at::Tensor& filters, int64_t offset, bool transpose) {
  at::Tensor weight = filters.select(1, offset);
  return transpose ? weight : weight.t();
}

// Pairs of each kernel offset, grouped by offset: starts[k] .. starts[k + 1].
std::vector<int64_t> offset_starts(const std::vector<int64_t>& counts) {
  std::vector<int64_t> starts(counts.size() + 1, 0);
  for (size_t offset = 0; offset < counts.size(); ++offset) starts[offset + 1] = starts[offset] + counts[offset];
  return starts;
}

// The pairs of [begin, end) (scatter rows ascending) whose scatter row lies in [first_row, last_row).
std::pair<int64_t, int64_t> pairs_in_tile(const int64_t* scatter, int64_t begin, int64_t end, int64_t first_row,
                                          int64_t last_row) {
  const int64_t* low = std::lower_bound(scatter + begin, scatter + end, first_row);
  const int64_t* high = std::lower_bound(low, scatter + end, last_row);
  return {low - scatter, high - scatter};
}

// Calls step(offset, first_pair, count) for every non-identity offset's pairs, tile of scatter rows by tile.
template <typename Step>
void for_each_tile_step(const int64_t* scatter, const std::vector<int64_t>& counts, int64_t identity,
                        int64_t scatter_rows, int64_t tile_rows, const Step& step) {
  const std::vector<int64_t> starts = offset_starts(counts);
  for (int64_t first_row = 0; first_row < scatter_rows; first_row += tile_rows) {
    const int64_t last_row = std::min(scatter_rows, first_row + tile_rows);
    for (int64_t offset = 0; offset < static_cast<int64_t>(counts.size()); ++offset) {
      if (offset == identity || counts[offset] == 0) continue;
      const auto [begin, end] = pairs_in_tile(scatter, starts[offset], starts[offset + 1], first_row, last_row);
      if (end > begin) step(offset, begin, end - begin);
    }
  }
}

template <typename scalar_t>
void gather_gemm_scatter_typed(const at::Tensor& source, const at::Tensor& filters, const at::Tensor& gather,
                               const at::Tensor& scatter, const std::vector<int64_t>& counts, int64_t identity,
                               bool transpose, at::Tensor& out, int64_t tile_rows) {
  // At most one pair per scatter row and offset: a tile's step has at most tile_rows pairs.
  at::Tensor gathered = source.new_empty({tile_rows, source.size(1)});
  at::Tensor product = source.new_empty({tile_rows, out.size(1)});
  const int64_t* gather_index = gather.data_ptr<int64_t>();
  const int64_t* scatter_index = scatter.data_ptr<int64_t>();
  for_each_tile_step(scatter_index, counts, identity, out.size(0), tile_rows,
                     [&](int64_t offset, int64_t first, int64_t count) {
    at::Tensor rows = gathered.narrow(0, 0, count);
    at::Tensor products = product.narrow(0, 0, count);
    gather_rows<scalar_t>(source, gather_index + first, count, rows);
    at::mm_out(products, rows, offset_weight(filters, offset, transpose));
    scatter_add_rows<scalar_t>(products, scatter_index + first, count, out);
  });
}

template <typename scalar_t>
void weight_gradient_typed(const at::Tensor& features, const at::Tensor& grad_out, const at::Tensor& filters,
                           const at::Tensor& gather, const at::Tensor& scatter, const std::vector<int64_t>& counts,
                           int64_t identity, at::Tensor& grad_filters, const c10::optional<at::Tensor>& grad_features,
                           int64_t tile_rows) {
  at::Tensor grad_buffer = grad_out.new_empty({tile_rows, grad_out.size(1)});
  at::Tensor input_buffer = features.new_empty({tile_rows, features.size(1)});
  at::Tensor product_buffer = features.new_empty({grad_features ? tile_rows : 0, features.size(1)});
  const int64_t* gather_index = gather.data_ptr<int64_t>();
  const int64_t* scatter_index = scatter.data_ptr<int64_t>();
  for_each_tile_step(scatter_index, counts, identity, features.size(0), tile_rows,
                     [&](int64_t offset, int64_t first, int64_t count) {
    at::Tensor grad_rows = grad_buffer.narrow(0, 0, count);
    at::Tensor input_rows = input_buffer.narrow(0, 0, count);
    gather_rows<scalar_t>(grad_out, gather_index + first, count, grad_rows);
    gather_rows<scalar_t>(features, scatter_index + first, count, input_rows);
    at::Tensor offset_grad = grad_filters.select(1, offset);
    offset_grad.addmm_(grad_rows.t(), input_rows);
    if (grad_features) {
      at::Tensor products = product_buffer.narrow(0, 0, count);
      at::mm_out(products, grad_rows, filters.select(1, offset));
      at::Tensor target = *grad_features;
      scatter_add_rows<scalar_t>(products, scatter_index + first, count, target);
    }
  });
}

void check_operands(const at::Tensor& source, const at::Tensor& gather, const at::Tensor& scatter,
                    const at::Tensor& out) {
  TORCH_CHECK(source.device().is_cpu() && out.device().is_cpu(), "pair_gemm runs on the CPU");
  TORCH_CHECK(source.is_contiguous() && out.is_contiguous(), "pair_gemm needs contiguous rows");
  TORCH_CHECK(source.scalar_type() == out.scalar_type(), "pair_gemm needs one dtype for source and out");
  TORCH_CHECK(gather.scalar_type() == at::kLong && scatter.scalar_type() == at::kLong, "pair_gemm needs int64 indices");
  TORCH_CHECK(gather.is_contiguous() && scatter.is_contiguous(), "pair_gemm needs contiguous indices");
}

}  // namespace

// out[scatter[p]] += source[gather[p]] @ W[k] over the pairs p of every offset k but the identity one.
void gather_gemm_scatter(const at::Tensor& source, const at::Tensor& filters, const at::Tensor& gather,
                         const at::Tensor& scatter, const std::vector<int64_t>& counts, int64_t identity,
                         bool transpose, at::Tensor out, int64_t tile_rows) {
  check_operands(source, gather, scatter, out);
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "gather_gemm_scatter", [&] {
    gather_gemm_scatter_typed<scalar_t>(source, filters, gather, scatter, counts, identity, transpose, out,
                                        tile_rows);
  });
}

// grad_filters[:, k] += grad_out[gather]^T @ features[scatter] per offset k but the identity one; with
// grad_features, also grad_features[scatter[p]] += grad_out[gather[p]] @ W[k]^T from the same rows.
void weight_gradient(const at::Tensor& features, const at::Tensor& grad_out, const at::Tensor& filters,
                     const at::Tensor& gather, const at::Tensor& scatter, const std::vector<int64_t>& counts,
                     int64_t identity, at::Tensor grad_filters, c10::optional<at::Tensor> grad_features,
                     int64_t tile_rows) {
  check_operands(features, gather, scatter, grad_out);
  if (grad_features) check_operands(features, gather, scatter, *grad_features);
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "weight_gradient", [&] {
    weight_gradient_typed<scalar_t>(features, grad_out, filters, gather, scatter, counts, identity, grad_filters,
                                    grad_features, tile_rows);
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("gather_gemm_scatter", &gather_gemm_scatter);
  module.def("weight_gradient", &weight_gradient);
}
