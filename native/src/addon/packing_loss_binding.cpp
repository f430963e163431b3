// packingLoss(z, views, dim, options, mode) -> Promise<{ loss, grad, stats }>, computed on the compute
// thread over z's own memory. mode: "fused" (every diagnostic), "fused-pair-pass" (no
// nearest-centre accuracy, the per-step cost of training), "unfused" (the autograd yardstick, no stats).
#include "addon/arguments.h"
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/compute_thread.h"
#include "addon/errors.h"
#include "core/loss/packing_loss.h"
#include "core/runtime.h"

#include <c10/core/GradMode.h>

#include <optional>

namespace clamp::addon {
namespace {

int64_t integer_argument(const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) throw_type_error(value.Env(), std::string(name) + " must be a number");
  const double number = value.As<Napi::Number>().DoubleValue();
  if (number != static_cast<double>(static_cast<int64_t>(number)))
    throw Napi::RangeError::New(value.Env(), std::string(name) + " must be an integer");
  return static_cast<int64_t>(number);
}

enum class Mode { fused, fused_pair_pass, unfused };

Mode read_mode(const Napi::Value& value) {
  const std::string mode = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (mode == "fused") return Mode::fused;
  if (mode == "fused-pair-pass") return Mode::fused_pair_pass;
  if (mode == "unfused") return Mode::unfused;
  throw Napi::TypeError::New(value.Env(), "mode must be 'fused', 'fused-pair-pass' or 'unfused'");
}

class PackingLossJob : public ComputeJob {
 public:
  PackingLossJob(const Napi::TypedArray& z, int64_t views, int64_t dim, const PackingLossOptions& options, Mode mode)
      : z_reference_(Napi::Persistent(z)), z_(rows_over(z, dim)), views_(views), options_(options), mode_(mode) {}

 protected:
  void Execute() override {
    c10::AutoGradMode enable_grad(true);
    const at::Tensor input = z_.detach().requires_grad_(true);
    PackingStats stats;
    const at::Tensor loss = mode_ == Mode::unfused ? packing_loss_reference(input, views_, options_)
                                                   : packing_loss(input, views_, options_, &stats,
                                                                  mode_ == Mode::fused ? Diagnostics::all : Diagnostics::pair_pass);
    loss.backward();
    loss_ = loss.item<double>();
    grad_ = input.grad();
    if (mode_ != Mode::unfused) stats_ = stats;
  }

  Napi::Value Result(Napi::Env env) override {
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
    return result;
  }

 private:
  Napi::Reference<Napi::TypedArray> z_reference_;  // keeps z's memory alive under the tensor
  at::Tensor z_;
  int64_t views_;
  PackingLossOptions options_;
  Mode mode_;
  double loss_ = 0;
  at::Tensor grad_;
  std::optional<PackingStats> stats_;
};

// packingLoss(z: Float32Array | Float64Array, views: number, dim: number, options, mode: string)
Napi::Value packing_loss_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5) throw_type_error(env, "packingLoss(z, views, dim, options, mode) takes 5 arguments");
  if (!info[0].IsTypedArray()) throw_type_error(env, "z must be a Float32Array or Float64Array");
  const auto z = info[0].As<Napi::TypedArray>();
  if (z.TypedArrayType() != napi_float32_array && z.TypedArrayType() != napi_float64_array)
    throw_type_error(env, "z must be a Float32Array or Float64Array");
  const int64_t views = integer_argument(info[1], "views");
  const int64_t dim = integer_argument(info[2], "dim");
  if (dim < 1) throw Napi::RangeError::New(env, "dim must be at least 1");
  if (static_cast<int64_t>(z.ElementLength()) % dim != 0)
    throw Napi::RangeError::New(env, "z.length " + std::to_string(z.ElementLength()) + " is not a multiple of dim " + std::to_string(dim));
  const PackingLossOptions options = read_packing_loss_options(info[3]);
  return ComputeJob::Queue(env, new PackingLossJob(z, views, dim, options, read_mode(info[4])));
}

}  // namespace

void register_packing_loss(Napi::Env env, Napi::Object exports) { exports.Set("packingLoss", guarded<packing_loss_async>(env)); }

}  // namespace clamp::addon
