// Reading JavaScript option objects into C++: each field checked, a TypeError naming it otherwise.
// lib/ validates with zod first; these checks keep the binding safe when called directly.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "addon/buffers.h"
#include "addon/errors.h"
#include "core/models/resnet.h"
#include "core/optim/optimiser.h"
#include "core/optim/schedule.h"
#include "core/loss/packing_loss.h"
#include "core/state.h"

namespace clamp::addon {

inline double number_field(const Napi::Object& object, const char* name) {
  const Napi::Value value = object.Get(name);
  if (!value.IsNumber()) throw_type_error(object.Env(), std::string(name) + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

inline bool boolean_field(const Napi::Object& object, const char* name) {
  const Napi::Value value = object.Get(name);
  if (!value.IsBoolean()) throw_type_error(object.Env(), std::string(name) + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

inline std::string string_field(const Napi::Object& object, const char* name) {
  const Napi::Value value = object.Get(name);
  if (!value.IsString()) throw_type_error(object.Env(), std::string(name) + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

inline Napi::Object object_value(const Napi::Value& value, const char* name) {
  if (!value.IsObject()) throw_type_error(value.Env(), std::string(name) + " must be an object");
  return value.As<Napi::Object>();
}

inline std::vector<int64_t> integer_array(const Napi::Value& value, const char* name) {
  if (!value.IsArray()) throw_type_error(value.Env(), std::string(name) + " must be an array of numbers");
  const auto array = value.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t k = 0; k < array.Length(); ++k) {
    const Napi::Value item = array.Get(k);
    if (!item.IsNumber()) throw_type_error(value.Env(), std::string(name) + " must be an array of numbers");
    out.push_back(static_cast<int64_t>(item.As<Napi::Number>().Int64Value()));
  }
  return out;
}

inline std::vector<double> number_array(const Napi::Value& value, const char* name) {
  if (!value.IsArray()) throw_type_error(value.Env(), std::string(name) + " must be an array of numbers");
  const auto array = value.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t k = 0; k < array.Length(); ++k) {
    if (!array.Get(k).IsNumber()) throw_type_error(value.Env(), std::string(name) + " must be an array of numbers");
    out.push_back(array.Get(k).As<Napi::Number>().DoubleValue());
  }
  return out;
}

// The backbone fields (backbone, stem, inChannels, optional widths and blocks) of the trainer's and the
// encoder's options, as lib/ resolves them.
inline ResNetOptions read_backbone_options(const Napi::Object& o) {
  ResNetOptions options = ResNetOptions::named(string_field(o, "backbone"));
  const std::string stem = string_field(o, "stem");
  if (stem == "imagenet")
    options.stem = ResNetStem::imagenet;
  else if (stem == "cifar")
    options.stem = ResNetStem::cifar;
  else if (stem == "small")
    options.stem = ResNetStem::small;
  else
    throw std::invalid_argument("stem must be imagenet, cifar or small, got " + stem);
  options.in_channels = static_cast<int64_t>(number_field(o, "inChannels"));
  // Optional overrides of the named backbone's stages (a narrower or shallower network).
  if (!o.Get("widths").IsUndefined()) options.widths = integer_array(o.Get("widths"), "widths");
  if (!o.Get("blocks").IsUndefined()) options.blocks = integer_array(o.Get("blocks"), "blocks");
  return options;
}

// The optimiser object of lib/config/optimiser.ts's nativeOptimiserOptions: every field present. The
// learning rate is the schedule's to set.
inline OptimiserOptions read_optimiser_options(const Napi::Value& value) {
  const Napi::Object optimiser = object_value(value, "optimiser");
  OptimiserOptions options;
  options.kind = optimiser_kind_named(string_field(optimiser, "name"));
  options.weight_decay = number_field(optimiser, "weightDecay");
  options.momentum = number_field(optimiser, "momentum");
  options.eta = number_field(optimiser, "eta");
  options.nesterov = boolean_field(optimiser, "nesterov");
  options.beta1 = number_field(optimiser, "beta1");
  options.beta2 = number_field(optimiser, "beta2");
  options.eps = number_field(optimiser, "eps");
  return options;
}

// A warmup-cosine schedule { peakLr, warmupSteps, totalSteps, startLr, finalLr }.
inline WarmupCosineSchedule read_schedule(const Napi::Value& value) {
  const Napi::Object schedule = object_value(value, "schedule");
  WarmupCosineSchedule out;
  out.peak_lr = number_field(schedule, "peakLr");
  out.warmup_steps = static_cast<int64_t>(number_field(schedule, "warmupSteps"));
  out.total_steps = static_cast<int64_t>(number_field(schedule, "totalSteps"));
  out.start_lr = number_field(schedule, "startLr");
  out.final_lr = number_field(schedule, "finalLr");
  return out;
}

// State entries { name, shape, data: typed array } as tensors over the arrays, in place; the arrays are
// referenced in keep_alive, which the caller holds while the tensors are used.
inline std::vector<NamedTensor> read_state_entries(const Napi::Value& value, std::vector<Napi::Reference<Napi::TypedArray>>& keep_alive) {
  if (!value.IsArray()) throw_type_error(value.Env(), "state must be an array of { name, shape, data }");
  const auto entries = value.As<Napi::Array>();
  std::vector<NamedTensor> out;
  for (uint32_t k = 0; k < entries.Length(); ++k) {
    const Napi::Object entry = object_value(entries.Get(k), "each state entry");
    const Napi::Value data = entry.Get("data");
    if (!data.IsTypedArray())
      throw_type_error(entries.Env(), "state entry " + string_field(entry, "name") + ": data must be a typed array");
    const auto array = data.As<Napi::TypedArray>();
    keep_alive.push_back(Napi::Persistent(array));
    out.push_back({string_field(entry, "name"), tensor_over(array, integer_array(entry.Get("shape"), "shape"))});
  }
  return out;
}

// The packing loss's options as lib/config/packing-loss-options.ts resolves them: every field present.
inline PackingLossOptions read_packing_loss_options(const Napi::Value& value) {
  const Napi::Object object = object_value(value, "loss options");
  PackingLossOptions options;
  options.rs = number_field(object, "rs");
  options.pot_pow = number_field(object, "potPow");
  options.min_margin = number_field(object, "minMargin");
  options.max_range = number_field(object, "maxRange");
  options.lw0 = number_field(object, "lw0");
  options.lw1 = number_field(object, "lw1");
  options.log = boolean_field(object, "log");
  return options;
}

}  // namespace clamp::addon
