// qkrum::workers — one pool of std::threads for the independent reads or restarts of the
// annealer and the tabu search. Header-only, pure C++17.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace qkrum {
namespace workers {

// Runs `worker` on `requested` threads (<= 0: all hardware threads), but never on more
// threads than there are `jobs`; the workers share the jobs among themselves.
template <class F>
void run(int requested, std::int64_t jobs, F&& worker) {
  const std::int64_t hardware = std::max(1u, std::thread::hardware_concurrency());
  const std::int64_t threads = std::max<std::int64_t>(1, std::min<std::int64_t>(requested > 0 ? requested : hardware, jobs));
  if (threads == 1) {
    worker();
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads));
  for (std::int64_t t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
}

}  // namespace workers
}  // namespace qkrum
