// One thread that runs closures in order: where a gRPC reactor finishes a
// call after the scheduler reported its job done. The engine thread only
// posts here (it must never block), and this thread may block briefly:
// dropping a session lease can spill another session to disk.
//
//   CallbackExecutor executor;
//   executor.Post([reactor, outcome] { reactor->Finalize(outcome); });
#ifndef LINSERVE_SERVER_CALLBACK_EXECUTOR_H_
#define LINSERVE_SERVER_CALLBACK_EXECUTOR_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace linserve::server {

class CallbackExecutor {
 public:
  CallbackExecutor() : thread_([this] { Loop(); }) {}
  // Runs every closure already posted, then joins the thread.
  ~CallbackExecutor() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  CallbackExecutor(const CallbackExecutor&) = delete;
  CallbackExecutor& operator=(const CallbackExecutor&) = delete;

  // Thread-safe, never blocks on the closures.
  void Post(std::function<void()> closure) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closures_.push_back(std::move(closure));
    }
    cv_.notify_one();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stopping_ || !closures_.empty(); });
      if (closures_.empty()) return;  // stopping, nothing left
      std::function<void()> closure = std::move(closures_.front());
      closures_.pop_front();
      lock.unlock();
      closure();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> closures_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_CALLBACK_EXECUTOR_H_
