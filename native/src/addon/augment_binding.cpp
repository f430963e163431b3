// runViewProgram(source, channels, height, width, program, out, offset): one augmented view
// (core/augment/view_program.h) written into out[offset ..), in place. Synchronous: it runs on the
// calling thread, which is a loader worker (lib/augment/loader.ts), never the training's JS thread, and
// takes tens of microseconds.
#include "addon/bindings.h"
#include "addon/buffers.h"
#include "addon/errors.h"
#include "core/augment/view_program.h"

namespace clamp::addon {
namespace {

int64_t whole_argument(const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) throw_type_error(value.Env(), std::string(name) + " must be a number");
  const double x = value.As<Napi::Number>().DoubleValue();
  if (!(x >= 0 && x <= 9007199254740991.0 && static_cast<double>(static_cast<int64_t>(x)) == x))
    throw Napi::RangeError::New(value.Env(), std::string(name) + " must be a whole number >= 0, got " + std::to_string(x));
  return static_cast<int64_t>(x);
}

const char* const kUsage =
    "runViewProgram(source: Uint8Array | Float32Array, channels, height, width, program: Float64Array, out: Float32Array, offset)";

Napi::Value run_view_program_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 7 || !info[0].IsTypedArray() || !info[4].IsTypedArray() || !info[5].IsTypedArray()) throw_type_error(env, kUsage);
  const auto source = info[0].As<Napi::TypedArray>();
  const auto program = info[4].As<Napi::TypedArray>();
  const auto out = info[5].As<Napi::TypedArray>();
  if (source.TypedArrayType() != napi_uint8_array && source.TypedArrayType() != napi_float32_array)
    throw_type_error(env, std::string("the source must be a Uint8Array of pixels or a Float32Array of values: ") + kUsage);
  if (program.TypedArrayType() != napi_float64_array) throw_type_error(env, std::string("the program must be a Float64Array: ") + kUsage);
  if (out.TypedArrayType() != napi_float32_array) throw_type_error(env, std::string("out must be a Float32Array: ") + kUsage);
  augment::ViewSource view;
  view.shape = {whole_argument(info[1], "channels"), whole_argument(info[2], "height"), whole_argument(info[3], "width")};
  const int64_t offset = whole_argument(info[6], "offset");
  // Checked before the product below can overflow: run_view_program checks each side again.
  if (view.shape.channels > 64 || view.shape.height > (1 << 15) || view.shape.width > (1 << 15))
    throw Napi::RangeError::New(env, "the source image must have at most 64 channels and 32768 pixels a side");
  if (static_cast<int64_t>(source.ElementLength()) != view.shape.values())
    throw Napi::RangeError::New(env, "the source holds " + std::to_string(source.ElementLength()) +
                                         " values, not channels * height * width = " + std::to_string(view.shape.values()));
  if (offset > static_cast<int64_t>(out.ElementLength()))
    throw Napi::RangeError::New(
        env, "offset " + std::to_string(offset) + " is past the end of out (" + std::to_string(out.ElementLength()) + " values)");
  if (source.TypedArrayType() == napi_uint8_array)
    view.bytes = static_cast<const uint8_t*>(typed_array_data(source));
  else
    view.values = static_cast<const float*>(typed_array_data(source));
  float* destination = static_cast<float*>(typed_array_data(out)) + offset;
  const augment::ImageShape shape =
      augment::run_view_program(view, static_cast<const double*>(typed_array_data(program)), program.ElementLength(), destination,
                                static_cast<int64_t>(out.ElementLength()) - offset);
  Napi::Array result = Napi::Array::New(env, 3);
  result[0u] = Napi::Number::New(env, static_cast<double>(shape.channels));
  result[1u] = Napi::Number::New(env, static_cast<double>(shape.height));
  result[2u] = Napi::Number::New(env, static_cast<double>(shape.width));
  return result;
}

}  // namespace

void register_augment(Napi::Env env, Napi::Object exports) { exports.Set("runViewProgram", guarded<run_view_program_binding>(env)); }

}  // namespace clamp::addon
