// One thread runs all of the process's LibTorch work, in submission order, and settles a promise on the
// JS thread when each job is done.
//
// Why not libuv's pool (Napi::AsyncWorker): LibTorch's OpenMP backend keeps a team of worker threads per
// calling thread, so jobs landing on the pool's four threads grow four teams, and concurrent jobs
// oversubscribe the cores (measured: slower on a 2-core machine). Why not block a pool thread waiting
// for this one: that would starve Node's own users of the pool (fs, dns, zlib).
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>

#include "addon/errors.h"

namespace clamp::addon {

// Before the process exits: waits up to wait_ms for the running job, then lets no other start.
// process.exit() on the main thread goes straight to exit(), whose handlers and static destructors
// tear down LibTorch and oneDNN while this thread may be inside them (a segfault in about half of the
// runs that exited mid-step). lib/runtime/native.ts calls it from the process's 'exit' event, which
// comes before exit(); worker threads never call it (their environments' cleanup hooks wait instead).
// A job still running after wait_ms (a first step that builds oneDNN's primitives on a loaded machine
// took over 2 s) would meet those destructors all the same: the process then ends at once with
// exit_code, without running them (stdio flushed first).
void stop_compute_thread(int wait_ms, int exit_code);

class ComputeJob {
 public:
  virtual ~ComputeJob() = default;

  // Queues the job; the promise settles with Result() after Execute() succeeds, or rejects with the
  // error Execute() threw (translated at the binding boundary). Takes ownership of the job.
  // keep_loop_polling: for a job expected to take well under a millisecond, the JS thread's event loop
  // polls instead of sleeping for up to kPollMillis while it runs (see LoopPoller in compute_thread.cpp).
  static Napi::Promise Queue(Napi::Env env, ComputeJob* job, bool keep_loop_polling = false);
  static constexpr int kPollMillis = 1;

 protected:
  // On the compute thread. May throw anything.
  virtual void Execute() = 0;
  // On the JS thread, after Execute() returned normally.
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  // Whether the job's environment still exists. A worker thread terminated mid-job tears its
  // environment down while the job runs: the typed arrays the job reads in place are freed and its
  // thread-safe function destroyed (touching either crashes the process). The compute thread holds
  // the mutex while it runs the job; the environment's cleanup hook takes it (waiting for a running
  // job) and clears `alive`, so that a job not yet started is skipped.
  struct Liveness {
    std::mutex mutex;
    bool alive = true;
  };
  static void EnvironmentGone(void* liveness);

  static void Settle(Napi::Env env, Napi::Function, std::nullptr_t*, ComputeJob* job);
  using Completion = Napi::TypedThreadSafeFunction<std::nullptr_t, ComputeJob, &ComputeJob::Settle>;

  struct LoopPoller;
  LoopPoller* poller_ = nullptr;  // while keep_loop_polling; stopped and closed by Settle()
  std::unique_ptr<Napi::Promise::Deferred> deferred_;
  Completion completion_;
  std::shared_ptr<Liveness> liveness_;
  std::shared_ptr<Liveness>* cleanup_hook_arg_ = nullptr;  // owned by the cleanup hook while registered
  bool failed_ = false;
  CaughtError caught_;
};

}  // namespace clamp::addon
