#pragma once
// A helper thread that runs one job at a time beside its owner: the trainer
// gathers a replica's next batch on it while the replica computes this one
// (a double buffer: the job fills the buffer the step is not reading).

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace dpar::nn::detail {

class background_job {
 public:
  background_job() : thread_([this] { loop(); }) {}
  background_job(const background_job&) = delete;
  background_job& operator=(const background_job&) = delete;
  ~background_job() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();  // a job in progress finishes first
  }

  // Starts `job` on the helper thread; the previous job must have been waited for.
  void start(std::function<void()> job) {
    {
      std::lock_guard lock(mutex_);
      job_ = std::move(job);
      busy_ = true;
    }
    wake_.notify_all();
  }

  // Waits for the job started last (at once if none is running), then raises what it threw.
  void wait() {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return !busy_; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || job_; });
      if (!job_) return;  // stopping, nothing left to run
      auto job = std::exchange(job_, nullptr);
      lock.unlock();
      std::exception_ptr error;
      try {
        job();
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      error_ = error;
      busy_ = false;
      done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::function<void()> job_;
  std::exception_ptr error_;
  bool busy_ = false, stop_ = false;
  std::thread thread_;  // last: starts once the members it uses exist
};

}  // namespace dpar::nn::detail
