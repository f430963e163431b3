// knnVotes(train: Float32Array, labels: Uint8Array | Int32Array, queries: Float32Array, dim, options)
// -> Promise<Float32Array> of [queries, classes] vote totals, on the compute thread, reading the
// features in place.
#include "addon/arguments.h"
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/compute_thread.h"
#include "addon/errors.h"
#include "core/eval/knn.h"

#include <string>

namespace clamp::addon {
namespace {

Napi::TypedArray float32_argument(const Napi::Value& value, const char* name) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type_error(value.Env(), std::string(name) + " must be a Float32Array");
  return value.As<Napi::TypedArray>();
}

class KnnJob : public ComputeJob {
 public:
  KnnJob(const Napi::TypedArray& train, const Napi::TypedArray& labels, const Napi::TypedArray& queries, int64_t dim, const KnnOptions& options)
      : references_{Napi::Persistent(train), Napi::Persistent(labels), Napi::Persistent(queries)},
        train_(tensor_over(train, {int64_t(train.ElementLength()) / dim, dim})),
        labels_(tensor_over(labels, {int64_t(labels.ElementLength())})),
        queries_(tensor_over(queries, {int64_t(queries.ElementLength()) / dim, dim})),
        options_(options) {}

 protected:
  void Execute() override { votes_ = knn_votes(train_, labels_, queries_, options_); }
  Napi::Value Result(Napi::Env env) override { return typed_array_over(env, votes_); }

 private:
  Napi::Reference<Napi::TypedArray> references_[3];
  at::Tensor train_, labels_, queries_, votes_;
  KnnOptions options_;
};

Napi::Value knn_votes_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5) throw_type_error(env, "knnVotes(train, labels, queries, dim, { k, temperature, classes })");
  const auto train = float32_argument(info[0], "train");
  const auto queries = float32_argument(info[2], "queries");
  if (!info[1].IsTypedArray()) throw_type_error(env, "labels must be a Uint8Array or Int32Array");
  const auto labels = info[1].As<Napi::TypedArray>();
  if (labels.TypedArrayType() != napi_uint8_array && labels.TypedArrayType() != napi_int32_array)
    throw_type_error(env, "labels must be a Uint8Array or Int32Array");
  if (!info[3].IsNumber()) throw_type_error(env, "dim must be a number");
  const int64_t dim = info[3].As<Napi::Number>().Int64Value();
  if (dim < 1 || train.ElementLength() % dim != 0 || queries.ElementLength() % dim != 0)
    throw Napi::RangeError::New(env, "train.length and queries.length must be multiples of dim " + std::to_string(dim));
  const Napi::Object o = object_value(info[4], "options");
  KnnOptions options;
  options.k = static_cast<int64_t>(number_field(o, "k"));
  options.temperature = number_field(o, "temperature");
  options.classes = static_cast<int64_t>(number_field(o, "classes"));
  return ComputeJob::Queue(env, new KnnJob(train, labels, queries, dim, options));
}

}  // namespace

void register_eval(Napi::Env env, Napi::Object exports) { exports.Set("knnVotes", guarded<knn_votes_async>(env)); }

}  // namespace clamp::addon
