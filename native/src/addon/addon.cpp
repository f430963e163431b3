#include "addon/bindings.h"

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new clamp::addon::AddonData());  // deleted by Node when the environment ends
  clamp::addon::register_runtime(env, exports);
  clamp::addon::register_packing_loss(env, exports);
  clamp::addon::register_trainer(env, exports);
  clamp::addon::register_fine_tuner(env, exports);
  clamp::addon::register_eval(env, exports);
  clamp::addon::register_encoder(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(clamp_native, init)
