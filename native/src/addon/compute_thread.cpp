#include "addon/compute_thread.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

#include "core/runtime.h"

// libuv is declared here, not included: cmake-js builds against node-api-headers, which ship no uv.h.
// These few functions are libuv 1.x's stable ABI, exported by Node to addons; declared weak, so that a
// host without them loads the addon and simply never polls. A handle is opaque memory of
// uv_handle_size(UV_IDLE) bytes; no field of it is read.
extern "C" {
struct uv_loop_s;
struct uv_handle_s;
typedef void (*uv_idle_cb)(void* handle);
typedef void (*uv_close_cb)(uv_handle_s* handle);
__attribute__((weak)) size_t uv_handle_size(int type);
__attribute__((weak)) int uv_idle_init(uv_loop_s* loop, void* idle);
__attribute__((weak)) int uv_idle_start(void* idle, uv_idle_cb callback);
__attribute__((weak)) int uv_idle_stop(void* idle);
__attribute__((weak)) void uv_unref(uv_handle_s* handle);
__attribute__((weak)) void uv_close(uv_handle_s* handle, uv_close_cb callback);
__attribute__((weak)) uint64_t uv_now(const uv_loop_s* loop);
__attribute__((weak)) uv_loop_s* uv_default_loop(void);
}

namespace clamp::addon {
namespace {

class ComputeThread {
 public:
  // Created on first use and never destroyed: the thread outlives every Node environment (worker
  // threads included) and ends with the process.
  static ComputeThread& instance() {
    static ComputeThread* thread = new ComputeThread();
    return *thread;
  }

  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
      queued_.fetch_add(1, std::memory_order_release);
    }
    ready_.notify_one();
  }

  // Waits up to wait_ms for the running job to end, and lets no other start; false when it still runs.
  bool stop(int wait_ms) {
    stopped_ = true;
    if (!running_.try_lock_for(std::chrono::milliseconds(wait_ms))) return false;
    running_.unlock();
    return true;
  }

 private:
  ComputeThread() {
    std::thread([this] { run(); }).detach();
  }

  void run() {
    for (;;) {
      std::function<void()> job;
      spin_for_next_job();
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
        queued_.fetch_sub(1, std::memory_order_relaxed);
      }
      std::lock_guard<std::timed_mutex> running(running_);
      if (stopped_) return;
      job();
    }
  }

  // A job that follows the last one within kSpinMicros is taken without the thread going to sleep:
  // waking a sleeping thread cost ~100 us on the 2-core VM (a one-image embed() of the small network
  // took 0.29 ms, 0.13 of it in the network), a service's back-to-back calls pay it every time.
  static constexpr int kSpinMicros = 200;
  void spin_for_next_job() {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
    while (queued_.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();  // not a pause: a runnable thread (V8's compiler or GC helpers) takes the core at once
    }
  }

  std::atomic<int> queued_{0};
  std::timed_mutex running_;  // held while a job runs; the exit handler takes it to wait for that job
  std::atomic<bool> stopped_{false};
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
};

}  // namespace

void stop_compute_thread(int wait_ms, int exit_code) {
  if (ComputeThread::instance().stop(wait_ms)) return;
  std::fflush(nullptr);
  std::_Exit(exit_code);
}

// The compute thread's result reaches the JS thread through libuv (the thread-safe function's async
// handle), and waking a JS thread asleep in epoll_wait took 120-210 us on the 2-core VM: more than the
// small network's whole one-image forward pass (~130 us), so a service's one-image calls took twice
// what they computed. An active idle handle makes libuv poll with a zero timeout instead of sleeping:
// the JS thread keeps serving its other events and sees the result at once (measured: 0.29 ms -> 0.16
// ms per one-image embed()). Only for kPollMillis, unreferenced (it never keeps the process alive), and
// only for jobs expected to be short: a core spent polling during a long job would be taken from
// LibTorch's threads.
struct ComputeJob::LoopPoller {
  static constexpr int kUvIdle = 6;            // UV_IDLE in libuv 1.x's uv_handle_type
  static constexpr size_t kHandleSpace = 256;  // uv_idle_t is ~120 bytes on 64-bit Linux; checked below

  alignas(16) unsigned char handle[kHandleSpace];  // first: the callbacks get its address
  uv_loop_s* loop = nullptr;
  uint64_t deadline_ms = 0;

  static LoopPoller* Start(Napi::Env env) {
    if (!uv_handle_size || !uv_idle_init || !uv_idle_start || !uv_idle_stop || !uv_unref || !uv_close || !uv_now || !uv_default_loop)
      return nullptr;
    if (uv_handle_size(kUvIdle) > kHandleSpace) return nullptr;
    uv_loop_s* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) return nullptr;
    // The main thread's loop only. A worker thread's loop is closed when the worker is terminated, and
    // Node aborts the process if a handle is still open then: a job skipped by a terminated worker never
    // reaches Settle(), which closes the handle.
    if (loop != uv_default_loop()) return nullptr;
    auto* poller = new LoopPoller();
    poller->loop = loop;
    poller->deadline_ms = uv_now(loop) + kPollMillis;
    if (uv_idle_init(loop, poller->handle) != 0) {
      delete poller;
      return nullptr;
    }
    uv_unref(reinterpret_cast<uv_handle_s*>(poller->handle));
    uv_idle_start(poller->handle, [](void* handle) {
      auto* self = reinterpret_cast<LoopPoller*>(handle);
      if (uv_now(self->loop) >= self->deadline_ms) uv_idle_stop(handle);  // a long job after all: sleep again
    });
    return poller;
  }

  static void Stop(LoopPoller* poller) {
    uv_idle_stop(poller->handle);
    uv_close(reinterpret_cast<uv_handle_s*>(poller->handle), [](uv_handle_s* handle) { delete reinterpret_cast<LoopPoller*>(handle); });
  }
};

void ComputeJob::EnvironmentGone(void* arg) {
  std::unique_ptr<std::shared_ptr<Liveness>> liveness(static_cast<std::shared_ptr<Liveness>*>(arg));
  std::lock_guard<std::mutex> lock((*liveness)->mutex);
  (*liveness)->alive = false;
}

Napi::Promise ComputeJob::Queue(Napi::Env env, ComputeJob* job, bool keep_loop_polling) {
  job->deferred_ = std::make_unique<Napi::Promise::Deferred>(Napi::Promise::Deferred::New(env));
  // The thread-safe function also keeps the event loop alive until the job is settled.
  job->completion_ = Completion::New(env, "clamp-native:compute", 0, 1);
  // Registered after the thread-safe function, so it runs before the function's own teardown (cleanup
  // hooks run last-in, first-out).
  job->liveness_ = std::make_shared<Liveness>();
  job->cleanup_hook_arg_ = new std::shared_ptr<Liveness>(job->liveness_);
  NAPI_THROW_IF_FAILED(env, napi_add_env_cleanup_hook(env, &ComputeJob::EnvironmentGone, job->cleanup_hook_arg_), Napi::Promise());
  Napi::Promise promise = job->deferred_->Promise();
  if (keep_loop_polling) job->poller_ = LoopPoller::Start(env);
  ComputeThread::instance().post([job, liveness = job->liveness_] {
    // Held while the job reads and writes JavaScript memory and calls into its environment: a worker
    // thread being terminated waits in its cleanup hook until the running job is done, and jobs that
    // have not started when it goes are skipped (and leaked rather than touched from this thread).
    std::lock_guard<std::mutex> lock(liveness->mutex);
    if (!liveness->alive) return;
    job->failed_ = !catch_all(
        [job] {
          prepare_worker_thread();  // adopt the current intra-op thread count
          job->Execute();
        },
        job->caught_);
    // Settle() deletes the job on the JS thread, possibly before BlockingCall returns here: use a copy
    // of the handle, which stays valid until this thread releases it.
    Completion completion = job->completion_;
    completion.BlockingCall(job);
    completion.Release();
  });
  return promise;
}

void ComputeJob::Settle(Napi::Env env, Napi::Function, std::nullptr_t*, ComputeJob* job) {
  if (env == nullptr) return;  // environment shutting down
  std::unique_ptr<ComputeJob> owned(job);
  {
    // The compute thread may still be releasing the thread-safe function: wait for it (it does not
    // wait for this thread) before the environment may go without waiting for this job.
    std::lock_guard<std::mutex> released(job->liveness_->mutex);
  }
  if (job->poller_ != nullptr) LoopPoller::Stop(job->poller_);
  napi_remove_env_cleanup_hook(env, &ComputeJob::EnvironmentGone, job->cleanup_hook_arg_);
  delete job->cleanup_hook_arg_;
  Napi::HandleScope scope(env);
  if (job->failed_) {
    job->deferred_->Reject(to_js_error(env, job->caught_).Value());
    return;
  }
  try {
    job->deferred_->Resolve(job->Result(env));
  } catch (const Napi::Error& error) {
    job->deferred_->Reject(error.Value());
  } catch (...) {
    job->deferred_->Reject(to_js_error(env, classify_current_exception()).Value());
  }
}

}  // namespace clamp::addon
