// Runs a job every `period` on an Asio io_context, at a fixed rate (deadlines do not drift with the
// job's own run time) but without bursts: a job that overran resumes one period after it finished.
#pragma once

// GCC 12 needs <utility> before Asio (see ENVIRONMENT.md).
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>

namespace loopwatch::agent {

// Not thread safe: construct, Start and destroy on the thread that runs the io_context.
class PeriodicTimer {
 public:
  using Clock = std::chrono::steady_clock;

  PeriodicTimer(boost::asio::io_context& io, Clock::duration period, std::function<void()> job)
      : timer_(io), period_(period), job_(std::move(job)) {}
  PeriodicTimer(const PeriodicTimer&) = delete;
  PeriodicTimer& operator=(const PeriodicTimer&) = delete;

  void Start() {
    deadline_ = Clock::now() + period_;
    Arm();
  }

 private:
  void Arm() {
    timer_.expires_at(deadline_);
    timer_.async_wait([this](const boost::system::error_code& error) {
      if (error) return;  // cancelled: the io_context is stopping
      job_();
      deadline_ += period_;
      const auto now = Clock::now();
      if (deadline_ < now) deadline_ = now + period_;
      Arm();
    });
  }

  boost::asio::steady_timer timer_;
  const Clock::duration period_;
  const std::function<void()> job_;
  Clock::time_point deadline_{};
};

}  // namespace loopwatch::agent
