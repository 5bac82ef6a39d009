// qkrum._core: thin pybind11 bindings over the pure C++ in csrc/.
#include <pybind11/pybind11.h>

#include <string>
#include <thread>

namespace py = pybind11;

namespace {

std::string compiler_id() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "qkrum native extension (private; use the qkrum package API)";
  m.def(
      "build_info",
      []() {
        py::dict info;
        info["version"] = QKRUM_VERSION;
        info["compiler"] = compiler_id();
        info["cplusplus"] = static_cast<long>(__cplusplus);
        info["hardware_threads"] = std::thread::hardware_concurrency();
        return info;
      },
      "Compiler, language standard and hardware threads the extension was built with.");
}
