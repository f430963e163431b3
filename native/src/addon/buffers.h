// Tensors over JavaScript memory and JavaScript memory over tensors, without copies.
#pragma once

#include <napi.h>

#include <ATen/ATen.h>

#include <cstring>
#include <string>
#include <vector>

namespace clamp::addon {

// The typed array's first element, in place: napi_get_typedarray_info's own data pointer, which
// includes the byte offset. array.ArrayBuffer().Data() would refuse a typed array over a
// SharedArrayBuffer (napi_get_arraybuffer_info takes plain ArrayBuffers only), which is how worker
// threads share a batch and the loader's workers the dataset's bytes.
inline void* typed_array_data(const Napi::TypedArray& array) {
  void* data = nullptr;
  NAPI_THROW_IF_FAILED(array.Env(), napi_get_typedarray_info(array.Env(), array, nullptr, nullptr, &data, nullptr, nullptr), nullptr);
  return data;
}

// A tensor viewing a typed array in place (Float32Array, Float64Array, Uint8Array, Int32Array,
// BigInt64Array). The caller keeps the typed array alive (a Napi::Reference) while the tensor is used.
inline at::Tensor tensor_over(const Napi::TypedArray& array, const std::vector<int64_t>& shape) {
  at::ScalarType dtype;
  switch (array.TypedArrayType()) {
    case napi_float32_array:
      dtype = at::kFloat;
      break;
    case napi_float64_array:
      dtype = at::kDouble;
      break;
    case napi_uint8_array:
      dtype = at::kByte;
      break;
    case napi_int32_array:
      dtype = at::kInt;
      break;
    case napi_bigint64_array:
      dtype = at::kLong;
      break;
    default:
      throw Napi::TypeError::New(array.Env(), "expected a Float32Array, Float64Array, Uint8Array, Int32Array or BigInt64Array");
  }
  int64_t count = 1;
  for (const int64_t n : shape) count *= n;
  if (count != static_cast<int64_t>(array.ElementLength()))
    throw Napi::RangeError::New(array.Env(), "a typed array of " + std::to_string(array.ElementLength()) +
                                                 " elements does not fill a tensor of " + std::to_string(count));
  return at::from_blob(typed_array_data(array), shape, at::TensorOptions().dtype(dtype));
}

// A [length / dim, dim] matrix over a typed array in place (the caller checked that dim divides the length).
inline at::Tensor rows_over(const Napi::TypedArray& array, int64_t dim) {
  return tensor_over(array, {static_cast<int64_t>(array.ElementLength()) / dim, dim});
}

// A typed array over the tensor's own memory: the ArrayBuffer holds a reference to the tensor and
// releases it when garbage-collected. Runtimes that forbid external buffers (some Electron builds)
// get a copy instead.
inline Napi::Value typed_array_over(Napi::Env env, const at::Tensor& source) {
  const at::Tensor tensor = source.contiguous();
  const size_t bytes = tensor.numel() * tensor.element_size();
  const at::ScalarType dtype = tensor.scalar_type();
  if (dtype != at::kDouble && dtype != at::kFloat && dtype != at::kLong && dtype != at::kInt)
    throw Napi::TypeError::New(env, "only float32, float64, int32 and int64 tensors cross into JavaScript");

  auto* owner = new at::Tensor(tensor);
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(
      env, tensor.data_ptr(), bytes, [](napi_env, void*, void* hint) { delete static_cast<at::Tensor*>(hint); }, owner, &buffer);
  if (status == napi_no_external_buffers_allowed) {
    delete owner;
    Napi::ArrayBuffer copy = Napi::ArrayBuffer::New(env, bytes);
    std::memcpy(copy.Data(), tensor.data_ptr(), bytes);
    buffer = copy;
  } else if (status != napi_ok) {
    delete owner;
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  }
  const Napi::ArrayBuffer array_buffer(env, buffer);
  if (dtype == at::kDouble) return Napi::Float64Array::New(env, tensor.numel(), array_buffer, 0);
  if (dtype == at::kInt) return Napi::Int32Array::New(env, tensor.numel(), array_buffer, 0);
  if (dtype == at::kLong) return Napi::TypedArrayOf<int64_t>::New(env, tensor.numel(), array_buffer, 0, napi_bigint64_array);
  return Napi::Float32Array::New(env, tensor.numel(), array_buffer, 0);
}

}  // namespace clamp::addon
