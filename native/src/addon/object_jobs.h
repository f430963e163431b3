// Compute-thread jobs on a wrapped native object (a trainer, a fine-tuner): each holds the object
// itself (a shared_ptr: dispose() on the JS thread lets go of the wrapper's reference, and the object
// is freed when the last job on it ends) and keeps its JavaScript wrapper alive until it settles; the
// batch jobs keep the caller's typed arrays alive under the tensors that read them in place. Wrap is a
// Napi::ObjectWrap with shared_target(), which throws once the object was disposed.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "addon/arguments.h"
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/compute_thread.h"
#include "core/state.h"

namespace clamp::addon {

// Builds Target(options) on the compute thread (weight initialisation can take a while) and wraps it
// in the JavaScript class registered at AddonData::*wrapper, which takes ownership.
template <class Target, class Options>
class CreateObjectJob : public ComputeJob {
 public:
  CreateObjectJob(Options options, Napi::FunctionReference AddonData::* wrapper) : options_(std::move(options)), wrapper_(wrapper) {}

 protected:
  void Execute() override { target_ = std::make_unique<Target>(options_); }
  Napi::Value Result(Napi::Env env) override {
    return (env.GetInstanceData<AddonData>()->*wrapper_).New({Napi::External<Target>::New(env, target_.release())});
  }

 private:
  Options options_;
  Napi::FunctionReference AddonData::* wrapper_;
  std::unique_ptr<Target> target_;
};

template <class Wrap>
class ObjectJob : public ComputeJob {
 public:
  ObjectJob(Wrap* wrap, const Napi::Object& self) : target_(wrap->shared_target()), self_(Napi::Persistent(self)) {}

 protected:
  auto& target() { return *target_; }

 private:
  decltype(std::declval<Wrap&>().shared_target()) target_;
  Napi::ObjectReference self_;
};

// The object a wrapper owns until dispose(): held by shared_ptr so that jobs already queued keep it.
template <class Target>
class DisposableTarget {
 public:
  explicit DisposableTarget(const char* disposed_message) : disposed_message_(disposed_message) {}
  void reset(Target* target) { target_.reset(target); }
  void dispose() { target_.reset(); }
  // The object, or a JavaScript Error naming dispose() when it is gone.
  std::shared_ptr<Target> get(Napi::Env env) const {
    if (!target_) throw Napi::Error::New(env, disposed_message_);
    return target_;
  }

 private:
  const char* disposed_message_;
  std::shared_ptr<Target> target_;
};

// A job on the object and one batch of images (a Float32Array read in place as [n, c, h, w]).
template <class Wrap>
class ImageBatchJob : public ObjectJob<Wrap> {
 public:
  ImageBatchJob(Wrap* wrap, const Napi::Object& self, const Napi::TypedArray& images, const std::vector<int64_t>& shape)
      : ObjectJob<Wrap>(wrap, self), images_reference_(Napi::Persistent(images)), images_(tensor_over(images, shape)) {}

 protected:
  const at::Tensor& images() const { return images_; }

 private:
  Napi::Reference<Napi::TypedArray> images_reference_;
  at::Tensor images_;
};

// The (images: Float32Array, shape: [n, c, h, w]) at info[first] and info[first + 1], checked to agree.
inline std::vector<int64_t> image_batch_shape(const Napi::CallbackInfo& info, size_t first, const char* usage) {
  Napi::Env env = info.Env();
  if (info.Length() < first + 2 || !info[first].IsTypedArray() || info[first].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type_error(env, usage);
  const std::vector<int64_t> shape = integer_array(info[first + 1], "shape");
  if (shape.size() != 4) throw Napi::RangeError::New(env, "shape must be [n, c, h, w]");
  int64_t count = 1;
  for (const int64_t n : shape) count *= n;
  const auto images = info[first].As<Napi::TypedArray>();
  if (count != static_cast<int64_t>(images.ElementLength()))
    throw Napi::RangeError::New(env, "images.length " + std::to_string(images.ElementLength()) + " does not match the shape");
  return shape;
}

// Backbone features of the batch: target().features(images), handed over without a copy.
template <class Wrap>
class FeaturesJob : public ImageBatchJob<Wrap> {
 public:
  using ImageBatchJob<Wrap>::ImageBatchJob;

 protected:
  void Execute() override { features_ = this->target().features(this->images()); }
  Napi::Value Result(Napi::Env env) override { return typed_array_over(env, features_); }

 private:
  at::Tensor features_;
};

inline const char* dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kLong:
      return "int64";
    default:
      throw std::invalid_argument(std::string("no JavaScript form for state of dtype ") + c10::toString(dtype));
  }
}

// Snapshots of every tensor target().state() lists, on the CPU (training goes on changing the live
// ones), handed to JavaScript as { name, dtype, shape, data } without a further copy.
template <class Wrap>
class StateSnapshotJob : public ObjectJob<Wrap> {
 public:
  using ObjectJob<Wrap>::ObjectJob;

 protected:
  void Execute() override {
    for (const auto& item : this->target().state())
      snapshot_.push_back({item.name, item.tensor.detach().to(at::kCPU).clone().contiguous()});
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, snapshot_.size());
    for (size_t k = 0; k < snapshot_.size(); ++k) {
      const at::Tensor& tensor = snapshot_[k].tensor;
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", snapshot_[k].name);
      entry.Set("dtype", dtype_name(tensor.scalar_type()));
      Napi::Array shape = Napi::Array::New(env, tensor.dim());
      for (int64_t d = 0; d < tensor.dim(); ++d) shape.Set(uint32_t(d), double(tensor.size(d)));
      entry.Set("shape", shape);
      entry.Set("data", typed_array_over(env, tensor));
      out.Set(uint32_t(k), entry);
    }
    return out;
  }

 private:
  std::vector<NamedTensor> snapshot_;
};

// Copies saved { name, shape, data } entries into the object through Load (a callable taking the
// object and the named tensors), reading the arrays in place.
template <class Wrap, class Load>
class LoadStateJob : public ObjectJob<Wrap> {
 public:
  LoadStateJob(Wrap* wrap, const Napi::Object& self, const Napi::Value& entries, Load load)
      : ObjectJob<Wrap>(wrap, self), saved_(read_state_entries(entries, references_)), load_(std::move(load)) {}

 protected:
  void Execute() override { load_(this->target(), saved_); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  std::vector<Napi::Reference<Napi::TypedArray>> references_;  // keep the arrays under the tensors alive
  std::vector<NamedTensor> saved_;
  Load load_;
};

template <class Wrap, class Load>
ComputeJob* load_state_job(Wrap* wrap, const Napi::Object& self, const Napi::Value& entries, Load load) {
  return new LoadStateJob<Wrap, Load>(wrap, self, entries, std::move(load));
}

}  // namespace clamp::addon
