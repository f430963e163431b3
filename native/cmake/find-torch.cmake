# Finds LibTorch for the core (native/CMakeLists.txt) and the addon (CMakeLists.txt) alike, from Torch_DIR
# (the resolver's choice, scripts/resolve-libtorch.mjs).
#
# TorchConfig.cmake finds its Caffe2 config with find_package(Caffe2 PATHS <its own folder>/../Caffe2),
# and CMake searches its default prefixes before PATHS: where Debian's libtorch-dev is installed too, a
# build against pip's torch 2.13 would take /usr/lib/<arch>/cmake/Caffe2 (1.13) and link LibTorch 1.13's
# libraries under 2.13's headers. Pin Caffe2 to the folder beside the chosen Torch config.
if(Torch_DIR AND NOT Caffe2_DIR AND EXISTS "${Torch_DIR}/../Caffe2/Caffe2Config.cmake")
  get_filename_component(Caffe2_DIR "${Torch_DIR}/../Caffe2" ABSOLUTE)
  set(Caffe2_DIR "${Caffe2_DIR}" CACHE PATH "Caffe2's CMake config, beside Torch_DIR")
endif()
# TorchConfig.cmake's find_library(c10 PATHS <its lib folder>) has the same flaw: with Debian's LibTorch
# installed too, c10_LIBRARY became /usr/lib/<arch>/libc10.so, and a binary that uses no c10 symbol of
# its own (the augmentation tests) linked libc10.so.1.13 beside 2.13's libtorch_cpu.so and aborted at
# load. Look in the chosen LibTorch's own lib folder first; where it is not there (Debian's layout),
# the variable stays NOTFOUND and TorchConfig.cmake searches as before.
if(Torch_DIR AND NOT c10_LIBRARY)
  find_library(c10_LIBRARY c10 PATHS "${Torch_DIR}/../../../lib" NO_DEFAULT_PATH)
endif()
find_package(Torch REQUIRED)

# LibTorch 2.x's headers are C++20 (TorchConfig.cmake sets CXX_STANDARD 20 on its target, but CMake does
# not pass that on to whoever links it); 1.13's are C++17. Our code is C++17 and compiles as either.
get_target_property(CLAMP_TORCH_CXX_STANDARD torch CXX_STANDARD)
if(CLAMP_TORCH_CXX_STANDARD AND CLAMP_TORCH_CXX_STANDARD GREATER CMAKE_CXX_STANDARD)
  set(CMAKE_CXX_STANDARD ${CLAMP_TORCH_CXX_STANDARD})
endif()
