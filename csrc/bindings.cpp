// qkrum._core: thin pybind11 bindings over the pure C++ in csrc/. Every argument is
// checked in Python (qkrum._native.check_anneal_arguments / check_exact_arguments) before
// either implementation runs; the C++ re-checks what it relies on and throws
// std::invalid_argument (ValueError in Python) for direct callers of this private module.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <thread>

#include "anneal.hpp"
#include "tabu.hpp"

namespace py = pybind11;
namespace qa = qkrum::anneal;

namespace {

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64 = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using I8 = py::array_t<std::int8_t, py::array::c_style | py::array::forcecast>;

// The language standard in effect. MSVC keeps __cplusplus at 199711L unless built with
// /Zc:__cplusplus, and reports the real value in _MSVC_LANG.
long cplusplus() {
#if defined(_MSVC_LANG)
  return static_cast<long>(_MSVC_LANG);
#else
  return static_cast<long>(__cplusplus);
#endif
}

std::string compiler_id() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_FULL_VER);
#else
  return "unknown";
#endif
}

qa::Options make_options(std::int64_t n, std::int64_t num_reads, const F64& beta_schedule, std::uint64_t seed,
                         const std::string& order, std::int64_t cardinality, bool swap_moves, int num_threads,
                         const py::object& initial_states, I8& initial_holder) {
  qa::Options opt;
  opt.num_reads = num_reads;
  opt.beta_schedule.assign(beta_schedule.data(), beta_schedule.data() + beta_schedule.size());
  opt.seed = seed;
  if (order == "sequential") {
    opt.order = qa::Order::Sequential;
  } else if (order == "random") {
    opt.order = qa::Order::Random;
  } else {
    throw std::invalid_argument("order must be 'sequential' or 'random', got '" + order + "'");
  }
  opt.cardinality = cardinality;
  opt.swap_moves = swap_moves;
  opt.num_threads = num_threads;
  if (!initial_states.is_none()) {
    initial_holder = initial_states.cast<I8>();
    if (initial_holder.ndim() != 2 || initial_holder.shape(0) != num_reads || initial_holder.shape(1) != n)
      throw std::invalid_argument("initial_states must have shape (num_reads, n)");
    opt.initial_states = initial_holder.data();
  }
  return opt;
}

py::tuple pack(qa::Result&& r, std::int64_t num_reads, std::int64_t n) {
  I8 samples({num_reads, n});
  std::copy(r.samples.begin(), r.samples.end(), samples.mutable_data());
  F64 energies(num_reads);
  std::copy(r.energies.begin(), r.energies.end(), energies.mutable_data());
  return py::make_tuple(samples, energies, r.flip_attempts);
}

py::tuple anneal_dense(const F64& J, const F64& h, std::int64_t num_reads, const F64& beta_schedule,
                       std::uint64_t seed, const std::string& order, std::int64_t cardinality, int num_threads,
                       const py::object& initial_states, bool swap_moves) {
  if (J.ndim() != 2 || J.shape(0) != J.shape(1)) throw std::invalid_argument("J must be a square matrix");
  const std::int64_t n = J.shape(0);
  if (h.ndim() != 1 || h.shape(0) != n) throw std::invalid_argument("h must have shape (n,)");
  I8 holder;
  qa::Options opt = make_options(n, num_reads, beta_schedule, seed, order, cardinality, swap_moves, num_threads,
                                 initial_states, holder);
  qa::Dense q{J.data(), n};
  qa::Result r;
  {
    py::gil_scoped_release release;
    r = qa::anneal_dense(q, h.data(), opt);
  }
  return pack(std::move(r), num_reads, n);
}

py::tuple anneal_csr(const I64& indptr, const I64& indices, const F64& data, const F64& h, std::int64_t num_reads,
                     const F64& beta_schedule, std::uint64_t seed, const std::string& order,
                     std::int64_t cardinality, int num_threads, const py::object& initial_states,
                     bool swap_moves) {
  const std::int64_t n = h.shape(0);
  if (indptr.ndim() != 1 || indptr.shape(0) != n + 1) throw std::invalid_argument("indptr must have shape (n + 1,)");
  if (indices.shape(0) != data.shape(0)) throw std::invalid_argument("indices and data must have the same length");
  const std::int64_t nnz = indices.shape(0);
  if (indptr.at(0) != 0 || indptr.at(n) != nnz) throw std::invalid_argument("indptr must start at 0 and end at nnz");
  for (std::int64_t p = 0; p < nnz; ++p)
    if (indices.at(p) < 0 || indices.at(p) >= n) throw std::invalid_argument("indices must lie in [0, n)");
  I8 holder;
  qa::Options opt = make_options(n, num_reads, beta_schedule, seed, order, cardinality, swap_moves, num_threads,
                                 initial_states, holder);
  qa::Csr q{indptr.data(), indices.data(), data.data(), n};
  qa::Result r;
  {
    py::gil_scoped_release release;
    r = qa::anneal_csr(q, h.data(), opt);
  }
  return pack(std::move(r), num_reads, n);
}

py::tuple exact_dense(const F64& J, const F64& h, std::int64_t cardinality, std::int64_t max_states) {
  if (J.ndim() != 2 || J.shape(0) != J.shape(1)) throw std::invalid_argument("J must be a square matrix");
  const std::int64_t n = J.shape(0);
  if (h.ndim() != 1 || h.shape(0) != n) throw std::invalid_argument("h must have shape (n,)");
  qa::Dense q{J.data(), n};
  qa::ExactResult r;
  {
    py::gil_scoped_release release;
    r = qa::exact_dense(q, h.data(), cardinality, max_states);
  }
  const std::int64_t k = n ? static_cast<std::int64_t>(r.states.size()) / n : 0;
  I8 states({k, n});
  std::copy(r.states.begin(), r.states.end(), states.mutable_data());
  return py::make_tuple(r.energy, states, r.num_ground, r.num_states_searched);
}

py::tuple tabu_dense(const F64& J, const F64& h, std::int64_t cardinality, std::int64_t num_reads,
                     std::int64_t confirm, std::int64_t min_restarts, std::int64_t stall, std::int64_t max_iterations, std::int64_t tenure,
                     double timeout, std::uint64_t seed, int num_threads, const py::object& initial_states) {
  if (J.ndim() != 2 || J.shape(0) != J.shape(1)) throw std::invalid_argument("J must be a square matrix");
  const std::int64_t n = J.shape(0);
  if (h.ndim() != 1 || h.shape(0) != n) throw std::invalid_argument("h must have shape (n,)");
  qkrum::tabu::Options opt;
  opt.cardinality = cardinality;
  opt.max_restarts = num_reads;
  opt.confirm = confirm;
  opt.min_restarts = min_restarts;
  opt.stall = stall;
  opt.max_iterations = max_iterations;
  opt.tenure = tenure;
  opt.timeout_s = timeout;
  opt.seed = seed;
  opt.num_threads = num_threads;
  I8 holder;
  if (!initial_states.is_none()) {
    holder = initial_states.cast<I8>();
    if (holder.ndim() != 2 || holder.shape(1) != n) throw std::invalid_argument("initial_states must have shape (k, n)");
    opt.initial_states = holder.data();
    opt.num_initial = holder.shape(0);
  }
  qa::Dense q{J.data(), n};
  qkrum::tabu::Result r;
  {
    py::gil_scoped_release release;
    r = qkrum::tabu::tabu_dense(q, h.data(), opt);
  }
  I8 samples({r.restarts, n});
  std::copy(r.samples.begin(), r.samples.end(), samples.mutable_data());
  F64 energies(r.restarts);
  std::copy(r.energies.begin(), r.energies.end(), energies.mutable_data());
  I64 iterations(r.restarts);
  std::copy(r.iterations.begin(), r.iterations.end(), iterations.mutable_data());
  return py::make_tuple(samples, energies, iterations, r.confirmed, r.timed_out);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "qkrum native extension (private; use the qkrum package API)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  m.def(
      "build_info",
      []() {
        py::dict info;
        info["version"] = QKRUM_VERSION;
        info["compiler"] = compiler_id();
        info["cplusplus"] = cplusplus();
        info["hardware_threads"] = std::thread::hardware_concurrency();
        return info;
      },
      "Compiler, language standard and hardware threads the extension was built with.");
  m.def("anneal_dense", &anneal_dense, py::arg("J"), py::arg("h"), py::arg("num_reads"), py::arg("beta_schedule"),
        py::arg("seed"), py::arg("order"), py::arg("cardinality"), py::arg("num_threads"),
        py::arg("initial_states"), py::arg("swap_moves") = false);
  m.def("anneal_csr", &anneal_csr, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("h"),
        py::arg("num_reads"), py::arg("beta_schedule"), py::arg("seed"), py::arg("order"), py::arg("cardinality"),
        py::arg("num_threads"), py::arg("initial_states"), py::arg("swap_moves") = false);
  m.def("exact_dense", &exact_dense, py::arg("J"), py::arg("h"), py::arg("cardinality"), py::arg("max_states"));
  m.def("tabu_dense", &tabu_dense, py::arg("J"), py::arg("h"), py::arg("cardinality"), py::arg("num_reads"),
        py::arg("confirm"), py::arg("min_restarts"), py::arg("stall"), py::arg("max_iterations"), py::arg("tenure"), py::arg("timeout"),
        py::arg("seed"), py::arg("num_threads"), py::arg("initial_states"));
  m.def("read_seed", &qa::read_seed, py::arg("seed"), py::arg("read"));
  m.attr("MAX_EXHAUSTIVE_VARIABLES") = qa::kMaxExhaustiveVariables;
}
