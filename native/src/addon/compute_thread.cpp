#include "addon/compute_thread.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/runtime.h"

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
    }
    ready_.notify_one();
  }

  // Waits up to wait_ms for the running job to end, and lets no other start.
  void stop(int wait_ms) {
    stopped_ = true;
    if (running_.try_lock_for(std::chrono::milliseconds(wait_ms))) running_.unlock();
  }

 private:
  ComputeThread() { std::thread([this] { run(); }).detach(); }

  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      std::lock_guard<std::timed_mutex> running(running_);
      if (stopped_) return;
      job();
    }
  }

  std::timed_mutex running_;  // held while a job runs; the exit handler takes it to wait for that job
  std::atomic<bool> stopped_{false};
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
};

}  // namespace

void stop_compute_thread(int wait_ms) { ComputeThread::instance().stop(wait_ms); }

void ComputeJob::EnvironmentGone(void* arg) {
  std::unique_ptr<std::shared_ptr<Liveness>> liveness(static_cast<std::shared_ptr<Liveness>*>(arg));
  std::lock_guard<std::mutex> lock((*liveness)->mutex);
  (*liveness)->alive = false;
}

Napi::Promise ComputeJob::Queue(Napi::Env env, ComputeJob* job) {
  job->deferred_ = std::make_unique<Napi::Promise::Deferred>(Napi::Promise::Deferred::New(env));
  // The thread-safe function also keeps the event loop alive until the job is settled.
  job->completion_ = Completion::New(env, "clamp-native:compute", 0, 1);
  // Registered after the thread-safe function, so it runs before the function's own teardown (cleanup
  // hooks run last-in, first-out).
  job->liveness_ = std::make_shared<Liveness>();
  job->cleanup_hook_arg_ = new std::shared_ptr<Liveness>(job->liveness_);
  NAPI_THROW_IF_FAILED(env, napi_add_env_cleanup_hook(env, &ComputeJob::EnvironmentGone, job->cleanup_hook_arg_), Napi::Promise());
  Napi::Promise promise = job->deferred_->Promise();
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
