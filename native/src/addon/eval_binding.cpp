// Evaluation on the compute thread, reading features and labels in place:
// knnVotes(train, labels, queries, dim, options) -> Promise<Float32Array> [queries, classes] vote totals;
// cosineTopK(bank, queries, dim, k) -> Promise<{ similarity, index, k }>;
// effectiveRank(features, dim) -> Promise<number> (RankMe);
// linearProbe(train, trainLabels, test, testLabels, dim, options) -> Promise<{ learningRate,
// validationAccuracy, top1, top5, testLogits }>.
#include "addon/arguments.h"
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/compute_thread.h"
#include "addon/errors.h"
#include "core/eval/effective_rank.h"
#include "core/eval/knn.h"
#include "core/eval/linear_probe.h"

#include <string>
#include <vector>

namespace clamp::addon {
namespace {

Napi::TypedArray float32_argument(const Napi::Value& value, const char* name) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type_error(value.Env(), std::string(name) + " must be a Float32Array");
  return value.As<Napi::TypedArray>();
}

class KnnJob : public ComputeJob {
 public:
  KnnJob(const Napi::TypedArray& train, const Napi::TypedArray& labels, const Napi::TypedArray& queries, int64_t dim,
         const KnnOptions& options)
      : references_{Napi::Persistent(train), Napi::Persistent(labels), Napi::Persistent(queries)},
        train_(rows_over(train, dim)),
        labels_(tensor_over(labels, {int64_t(labels.ElementLength())})),
        queries_(rows_over(queries, dim)),
        options_(options) {}

 protected:
  void Execute() override { votes_ = knn_votes(train_, labels_, queries_, options_); }
  Napi::Value Result(Napi::Env env) override { return typed_array_over(env, votes_); }

 private:
  Napi::Reference<Napi::TypedArray> references_[3];
  at::Tensor train_, labels_, queries_, votes_;
  KnnOptions options_;
};

Napi::TypedArray labels_argument(const Napi::Value& value, const char* name) {
  if (!value.IsTypedArray()) throw_type_error(value.Env(), std::string(name) + " must be a Uint8Array or Int32Array");
  const auto labels = value.As<Napi::TypedArray>();
  if (labels.TypedArrayType() != napi_uint8_array && labels.TypedArrayType() != napi_int32_array)
    throw_type_error(value.Env(), std::string(name) + " must be a Uint8Array or Int32Array");
  return labels;
}

class LinearProbeJob : public ComputeJob {
 public:
  LinearProbeJob(const Napi::TypedArray& train, const Napi::TypedArray& train_labels, const Napi::TypedArray& test,
                 const Napi::TypedArray& test_labels, int64_t dim, const LinearProbeOptions& options)
      : references_{Napi::Persistent(train), Napi::Persistent(train_labels), Napi::Persistent(test), Napi::Persistent(test_labels)},
        train_(rows_over(train, dim)),
        train_labels_(tensor_over(train_labels, {int64_t(train_labels.ElementLength())})),
        test_(rows_over(test, dim)),
        test_labels_(tensor_over(test_labels, {int64_t(test_labels.ElementLength())})),
        options_(options) {}

 protected:
  void Execute() override { result_ = linear_probe(train_, train_labels_, test_, test_labels_, options_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("learningRate", result_.learning_rate);
    Napi::Array validation = Napi::Array::New(env, result_.validation_accuracy.size());
    for (size_t k = 0; k < result_.validation_accuracy.size(); ++k) validation.Set(uint32_t(k), result_.validation_accuracy[k]);
    out.Set("validationAccuracy", validation);
    out.Set("top1", result_.top1);
    out.Set("top5", result_.top5);
    out.Set("testLogits", typed_array_over(env, result_.test_logits));
    return out;
  }

 private:
  Napi::Reference<Napi::TypedArray> references_[4];
  at::Tensor train_, train_labels_, test_, test_labels_;
  LinearProbeOptions options_;
  LinearProbeResult result_;
};

Napi::Value linear_probe_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 6) throw_type_error(env, "linearProbe(train, trainLabels, test, testLabels, dim, options)");
  const auto train = float32_argument(info[0], "train");
  const auto train_labels = labels_argument(info[1], "trainLabels");
  const auto test = float32_argument(info[2], "test");
  const auto test_labels = labels_argument(info[3], "testLabels");
  if (!info[4].IsNumber()) throw_type_error(env, "dim must be a number");
  const int64_t dim = info[4].As<Napi::Number>().Int64Value();
  if (dim < 1 || train.ElementLength() % dim != 0 || test.ElementLength() % dim != 0)
    throw Napi::RangeError::New(env, "train.length and test.length must be multiples of dim " + std::to_string(dim));
  const Napi::Object o = object_value(info[5], "options");
  LinearProbeOptions options;
  options.classes = static_cast<int64_t>(number_field(o, "classes"));
  options.epochs = static_cast<int64_t>(number_field(o, "epochs"));
  options.batch_size = static_cast<int64_t>(number_field(o, "batchSize"));
  options.learning_rates = number_array(o.Get("learningRates"), "learningRates");
  options.momentum = number_field(o, "momentum");
  options.weight_decay = number_field(o, "weightDecay");
  options.validation_fraction = number_field(o, "validationFraction");
  options.seed = static_cast<uint64_t>(number_field(o, "seed"));
  return ComputeJob::Queue(env, new LinearProbeJob(train, train_labels, test, test_labels, dim, options));
}

class EffectiveRankJob : public ComputeJob {
 public:
  EffectiveRankJob(const Napi::TypedArray& features, int64_t dim)
      : reference_(Napi::Persistent(features)), features_(rows_over(features, dim)) {}

 protected:
  void Execute() override { rank_ = effective_rank(features_); }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, rank_); }

 private:
  Napi::Reference<Napi::TypedArray> reference_;
  at::Tensor features_;
  double rank_ = 0;
};

Napi::Value effective_rank_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2) throw_type_error(env, "effectiveRank(features: Float32Array, dim: number)");
  const auto features = float32_argument(info[0], "features");
  if (!info[1].IsNumber()) throw_type_error(env, "dim must be a number");
  const int64_t dim = info[1].As<Napi::Number>().Int64Value();
  if (dim < 1 || features.ElementLength() == 0 || features.ElementLength() % dim != 0)
    throw Napi::RangeError::New(env, "features.length must be a non-zero multiple of dim " + std::to_string(dim));
  return ComputeJob::Queue(env, new EffectiveRankJob(features, dim));
}

class CosineTopKJob : public ComputeJob {
 public:
  CosineTopKJob(const Napi::TypedArray& bank, const Napi::TypedArray& queries, int64_t dim, int64_t k)
      : references_{Napi::Persistent(bank), Napi::Persistent(queries)},
        bank_(rows_over(bank, dim)),
        queries_(rows_over(queries, dim)),
        k_(k) {}

 protected:
  void Execute() override {
    nearest_ = cosine_top_k(bank_, queries_, k_);
    nearest_.index = nearest_.index.to(at::kInt);  // row numbers fit in an Int32Array
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("similarity", typed_array_over(env, nearest_.similarity));
    out.Set("index", typed_array_over(env, nearest_.index));
    out.Set("k", double(nearest_.index.size(1)));
    return out;
  }

 private:
  Napi::Reference<Napi::TypedArray> references_[2];
  at::Tensor bank_, queries_;
  int64_t k_;
  CosineTopK nearest_;
};

Napi::Value cosine_top_k_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 4) throw_type_error(env, "cosineTopK(bank: Float32Array, queries: Float32Array, dim: number, k: number)");
  const auto bank = float32_argument(info[0], "bank");
  const auto queries = float32_argument(info[1], "queries");
  if (!info[2].IsNumber() || !info[3].IsNumber()) throw_type_error(env, "dim and k must be numbers");
  const int64_t dim = info[2].As<Napi::Number>().Int64Value(), k = info[3].As<Napi::Number>().Int64Value();
  if (dim < 1 || bank.ElementLength() % dim != 0 || queries.ElementLength() % dim != 0)
    throw Napi::RangeError::New(env, "bank.length and queries.length must be multiples of dim " + std::to_string(dim));
  return ComputeJob::Queue(env, new CosineTopKJob(bank, queries, dim, k));
}

Napi::Value knn_votes_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5) throw_type_error(env, "knnVotes(train, labels, queries, dim, { k, temperature, classes })");
  const auto train = float32_argument(info[0], "train");
  const auto queries = float32_argument(info[2], "queries");
  const auto labels = labels_argument(info[1], "labels");
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

void register_eval(Napi::Env env, Napi::Object exports) {
  exports.Set("knnVotes", guarded<knn_votes_async>(env));
  exports.Set("cosineTopK", guarded<cosine_top_k_async>(env));
  exports.Set("effectiveRank", guarded<effective_rank_async>(env));
  exports.Set("linearProbe", guarded<linear_probe_async>(env));
}

}  // namespace clamp::addon
