// Reading JavaScript option objects into C++: each field checked, a TypeError naming it otherwise.
// lib/ validates with zod first; these checks keep the binding safe when called directly.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "addon/errors.h"
#include "core/packing_loss.h"

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
