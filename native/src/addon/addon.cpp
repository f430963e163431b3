#include "addon/bindings.h"
#include "core/memory/caching_cpu_allocator.h"

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  // Before any tensor exists: every CPU tensor of the process then comes from the caching allocator.
  clamp::install_caching_cpu_allocator();
  env.SetInstanceData(new clamp::addon::AddonData());  // deleted by Node when the environment ends
  clamp::addon::register_runtime(env, exports);
  clamp::addon::register_packing_loss(env, exports);
  clamp::addon::register_trainer(env, exports);
  clamp::addon::register_fine_tuner(env, exports);
  clamp::addon::register_eval(env, exports);
  clamp::addon::register_encoder(env, exports);
  clamp::addon::register_augment(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(clamp_native, init)
