// Each binding file registers its functions on the module's exports.
#pragma once

#include <napi.h>

namespace clamp::addon {

void register_packing_loss(Napi::Env env, Napi::Object exports);
void register_runtime(Napi::Env env, Napi::Object exports);

}  // namespace clamp::addon
