// Tensors over JavaScript memory and JavaScript memory over tensors, without copies.
#pragma once

#include <napi.h>

#include <ATen/ATen.h>

#include <cstring>
#include <string>
#include <vector>

namespace clamp::addon {

// A tensor viewing a Float32Array or Float64Array in place. The caller keeps the typed array alive
// (a Napi::Reference) for as long as the tensor is used.
inline at::Tensor tensor_over(const Napi::TypedArray& array, const std::vector<int64_t>& shape) {
  at::ScalarType dtype;
  switch (array.TypedArrayType()) {
    case napi_float32_array: dtype = at::kFloat; break;
    case napi_float64_array: dtype = at::kDouble; break;
    default: throw Napi::TypeError::New(array.Env(), "expected a Float32Array or Float64Array");
  }
  auto* data = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  return at::from_blob(data, shape, at::TensorOptions().dtype(dtype));
}

// A typed array over the tensor's own memory: the ArrayBuffer holds a reference to the tensor and
// releases it when garbage-collected. Runtimes that forbid external buffers (some Electron builds)
// get a copy instead.
inline Napi::Value typed_array_over(Napi::Env env, const at::Tensor& source) {
  const at::Tensor tensor = source.contiguous();
  const size_t bytes = tensor.numel() * tensor.element_size();
  if (tensor.scalar_type() != at::kDouble && tensor.scalar_type() != at::kFloat)
    throw Napi::TypeError::New(env, "only float32 and float64 tensors cross into JavaScript");

  auto* owner = new at::Tensor(tensor);
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(
      env, tensor.data_ptr(), bytes,
      [](napi_env, void*, void* hint) { delete static_cast<at::Tensor*>(hint); }, owner, &buffer);
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
  if (tensor.scalar_type() == at::kDouble) return Napi::Float64Array::New(env, tensor.numel(), array_buffer, 0);
  return Napi::Float32Array::New(env, tensor.numel(), array_buffer, 0);
}

}  // namespace clamp::addon
