#include "addon/compute_thread.h"

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
      job();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
};

}  // namespace

Napi::Promise ComputeJob::Queue(Napi::Env env, ComputeJob* job) {
  job->deferred_ = std::make_unique<Napi::Promise::Deferred>(Napi::Promise::Deferred::New(env));
  // The thread-safe function also keeps the event loop alive until the job is settled.
  job->completion_ = Completion::New(env, "clamp-native:compute", 0, 1);
  Napi::Promise promise = job->deferred_->Promise();
  ComputeThread::instance().post([job] {
    job->failed_ = !catch_all(
        [job] {
          prepare_worker_thread();  // adopt the current intra-op thread count
          job->Execute();
        },
        job->caught_);
    // Settle() deletes the job on the JS thread, possibly before BlockingCall returns here: use a copy
    // of the handle, which stays valid until this thread releases it.
    // If the environment is already gone (a worker thread terminated mid-job), the call fails and the
    // job is leaked rather than touching JavaScript handles from this thread.
    Completion completion = job->completion_;
    completion.BlockingCall(job);
    completion.Release();
  });
  return promise;
}

void ComputeJob::Settle(Napi::Env env, Napi::Function, std::nullptr_t*, ComputeJob* job) {
  if (env == nullptr) return;  // environment shutting down
  std::unique_ptr<ComputeJob> owned(job);
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
