// The binding boundary: every C++ exception becomes a JavaScript error here, never an abort.
#pragma once

#include <napi.h>

#include <c10/util/Exception.h>

#include <stdexcept>
#include <string>

#include "core/compat.h"
#include "core/train/divergence.h"

namespace clamp::addon {

// Which JavaScript error class a failure maps to: argument problems are TypeError/RangeError, as in
// Node's own APIs; anything else is a plain Error.
enum class ErrorKind { Error, TypeError, RangeError };

struct CaughtError {
  ErrorKind kind = ErrorKind::Error;
  std::string message;
  std::string code;  // error.code in JavaScript when not empty, for failures callers handle by kind
};

// Names the exception in flight: call only inside a catch block.
inline CaughtError classify_current_exception() {
  try {
    throw;
  } catch (const std::invalid_argument& error) {
    return {ErrorKind::RangeError, error.what()};
  } catch (const TrainingDiverged& error) {
    return {ErrorKind::Error, error.what(), "CLAMP_TRAINING_DIVERGED"};
  } catch (const c10::Error& error) {
    return {ErrorKind::Error, "LibTorch: " + compat::error_message(error)};
  } catch (const std::bad_alloc&) {
    return {ErrorKind::RangeError, "out of memory: the inputs are too large for this machine"};
  } catch (const std::exception& error) {
    return {ErrorKind::Error, error.what()};
  } catch (...) {
    return {ErrorKind::Error, "unknown native error"};
  }
}

// Runs fn on a worker thread, where no JavaScript object may be created; a failure is kept for the
// JS thread to report.
template <typename Fn>
bool catch_all(Fn&& fn, CaughtError& caught) {
  try {
    fn();
    return true;
  } catch (...) {
    caught = classify_current_exception();
    return false;
  }
}

inline Napi::Error to_js_error(Napi::Env env, const CaughtError& caught) {
  Napi::Error error;
  switch (caught.kind) {
    case ErrorKind::TypeError:
      error = Napi::TypeError::New(env, caught.message);
      break;
    case ErrorKind::RangeError:
      error = Napi::RangeError::New(env, caught.message);
      break;
    default:
      error = Napi::Error::New(env, caught.message);
      break;
  }
  if (!caught.code.empty()) error.Set("code", Napi::String::New(env, caught.code));
  return error;
}

// Wraps a synchronous binding so that C++ exceptions surface as JS exceptions.
template <typename Fn>
Napi::Value call_guarded(const Napi::CallbackInfo& info, Fn&& fn) {
  try {
    return fn(info);
  } catch (const Napi::Error&) {
    throw;  // already a JavaScript error
  } catch (...) {
    throw to_js_error(info.Env(), classify_current_exception());
  }
}

// A JavaScript function over a synchronous binding, with the boundary guard around it.
template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
Napi::Function guarded(Napi::Env env) {
  return Napi::Function::New(env, [](const Napi::CallbackInfo& info) { return call_guarded(info, Fn); });
}

inline void throw_type_error(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

}  // namespace clamp::addon
