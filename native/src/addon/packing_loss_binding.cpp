// packingLoss(z, shape, options, implementation) -> Promise<{ loss, grad, stats }>, computed on a
// libuv worker thread over z's own memory.
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/errors.h"
#include "core/packing_loss.h"
#include "core/runtime.h"

#include <ATen/core/grad_mode.h>

#include <optional>

namespace clamp::addon {
namespace {

double number_field(const Napi::Object& options, const char* name) {
  const Napi::Value value = options.Get(name);
  if (!value.IsNumber()) throw_type_error(options.Env(), std::string("options.") + name + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

int64_t integer_argument(const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) throw_type_error(value.Env(), std::string(name) + " must be a number");
  const double number = value.As<Napi::Number>().DoubleValue();
  if (number != static_cast<double>(static_cast<int64_t>(number)))
    throw Napi::RangeError::New(value.Env(), std::string(name) + " must be an integer");
  return static_cast<int64_t>(number);
}

PackingLossOptions read_options(const Napi::Value& value) {
  if (!value.IsObject()) throw_type_error(value.Env(), "options must be an object");
  const auto object = value.As<Napi::Object>();
  PackingLossOptions options;
  options.rs = number_field(object, "rs");
  options.pot_pow = number_field(object, "potPow");
  options.min_margin = number_field(object, "minMargin");
  options.max_range = number_field(object, "maxRange");
  options.lw0 = number_field(object, "lw0");
  options.lw1 = number_field(object, "lw1");
  const Napi::Value log = object.Get("log");
  if (!log.IsBoolean()) throw_type_error(value.Env(), "options.log must be a boolean");
  options.log = log.As<Napi::Boolean>().Value();
  return options;
}

class PackingLossWorker : public Napi::AsyncWorker {
 public:
  PackingLossWorker(Napi::Env env, const Napi::TypedArray& z, int64_t views, int64_t dim,
                    const PackingLossOptions& options, bool reference)
      : Napi::AsyncWorker(env, "clamp-native:packingLoss"),
        deferred_(Napi::Promise::Deferred::New(env)),
        z_reference_(Napi::Persistent(z)),
        z_(tensor_over(z, {static_cast<int64_t>(z.ElementLength()) / dim, dim})),
        views_(views),
        options_(options),
        reference_(reference) {}

  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    const bool ok = catch_all(
        [&] {
          prepare_worker_thread();
          at::AutoGradMode enable_grad(true);
          const at::Tensor input = z_.detach().requires_grad_(true);
          PackingStats stats;
          const at::Tensor loss = reference_ ? packing_loss_reference(input, views_, options_)
                                             : packing_loss(input, views_, options_, &stats);
          loss.backward();
          loss_ = loss.item<double>();
          grad_ = input.grad();
          if (!reference_) stats_ = stats;
        },
        caught_);
    failed_ = !ok;
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failed_) {
      deferred_.Reject(to_js_error(env, caught_).Value());
      return;
    }
    try {
      Napi::Object result = Napi::Object::New(env);
      result.Set("loss", loss_);
      result.Set("grad", typed_array_over(env, grad_));
      if (stats_) {
        Napi::Object stats = Napi::Object::New(env);
        stats.Set("energy", stats_->energy);
        stats.Set("meanRadius", stats_->mean_radius);
        stats.Set("meanDistance", stats_->mean_distance);
        stats.Set("contactsPerImage", stats_->contacts_per_image);
        stats.Set("activity", stats_->activity);
        stats.Set("nearestCentreAccuracy", stats_->nearest_centre_accuracy);
        result.Set("stats", stats);
      } else {
        result.Set("stats", env.Null());
      }
      deferred_.Resolve(result);
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    }
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::TypedArray> z_reference_;  // keeps z's memory alive under the tensor
  at::Tensor z_;
  int64_t views_;
  PackingLossOptions options_;
  bool reference_;
  bool failed_ = false;
  CaughtError caught_;
  double loss_ = 0;
  at::Tensor grad_;
  std::optional<PackingStats> stats_;
};

// packingLoss(z: Float32Array | Float64Array, views: number, dim: number, options, reference: boolean)
Napi::Value packing_loss_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5) throw_type_error(env, "packingLoss(z, views, dim, options, reference) takes 5 arguments");
  if (!info[0].IsTypedArray()) throw_type_error(env, "z must be a Float32Array or Float64Array");
  const auto z = info[0].As<Napi::TypedArray>();
  if (z.TypedArrayType() != napi_float32_array && z.TypedArrayType() != napi_float64_array)
    throw_type_error(env, "z must be a Float32Array or Float64Array");
  const int64_t views = integer_argument(info[1], "views");
  const int64_t dim = integer_argument(info[2], "dim");
  if (dim < 1) throw Napi::RangeError::New(env, "dim must be at least 1");
  if (static_cast<int64_t>(z.ElementLength()) % dim != 0)
    throw Napi::RangeError::New(env, "z.length " + std::to_string(z.ElementLength()) + " is not a multiple of dim " +
                                         std::to_string(dim));
  const PackingLossOptions options = read_options(info[3]);
  if (!info[4].IsBoolean()) throw_type_error(env, "reference must be a boolean");
  auto* worker = new PackingLossWorker(env, z, views, dim, options, info[4].As<Napi::Boolean>().Value());
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace

void register_packing_loss(Napi::Env env, Napi::Object exports) {
  exports.Set("packingLoss", guarded<packing_loss_async>(env));
}

}  // namespace clamp::addon
