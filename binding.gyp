# The second build path (node-gyp, CPU only): `node scripts/build.mjs --gyp`. It reads the same source
# list (native/sources.json) and the same LibTorch resolution (scripts/resolve-libtorch.mjs) as the
# cmake-js build.
{
  "targets": [
    {
      "target_name": "clamp_native",
      "sources": [
        "<!@(node -p \"const s = require('./native/sources.json'); [...s.core, ...s.addon].join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/src",
        "native/src/core",
        "<!@(node scripts/resolve-libtorch.mjs --gyp include)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "CLAMP_BUILD_SYSTEM=\"node-gyp\"",
        "CLAMP_CXX_COMPILER=\"GNU (node-gyp)\""
      ],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["<!(node scripts/resolve-libtorch.mjs --gyp std)", "-fexceptions", "-frtti", "-fopenmp", "<!@(node scripts/resolve-libtorch.mjs --gyp cflags)"],
      "libraries": [
        "-L<!(node scripts/resolve-libtorch.mjs --gyp libdir)",
        "-Wl,-rpath,<!(node scripts/resolve-libtorch.mjs --gyp libdir)",
        "-ltorch",
        "-ltorch_cpu",
        "-lc10",
        "-lgomp"
      ],
      "configurations": {
        "Release": { "defines": ["CLAMP_BUILD_TYPE=\"Release\""] },
        "Debug": { "defines": ["CLAMP_BUILD_TYPE=\"Debug\""] }
      }
    }
  ]
}
