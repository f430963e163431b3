// Each binding file registers its functions on the module's exports.
#pragma once

#include <napi.h>

namespace clamp::addon {

// Per-environment state (each worker thread loads its own copy of the exports).
struct AddonData {
  Napi::FunctionReference trainer_class;
  Napi::FunctionReference encoder_class;
  Napi::FunctionReference fine_tuner_class;
};

void register_augment(Napi::Env env, Napi::Object exports);
void register_encoder(Napi::Env env, Napi::Object exports);
void register_eval(Napi::Env env, Napi::Object exports);
void register_fine_tuner(Napi::Env env, Napi::Object exports);
void register_packing_loss(Napi::Env env, Napi::Object exports);
void register_runtime(Napi::Env env, Napi::Object exports);
void register_trainer(Napi::Env env, Napi::Object exports);

}  // namespace clamp::addon
