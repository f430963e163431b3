// Stand-in for the header a CUDA build of LibTorch generates and a CPU-only one (Debian's) lacks, so that
// the CUDA glue can be compiled against the CPU LibTorch's headers as a check (native/CMakeLists.txt).
#pragma once
#define C10_CUDA_BUILD_SHARED_LIBS
