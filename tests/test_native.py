"""The native extension switch: required in CI, forced off by QKRUM_IMPLEMENTATION."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import qkrum

ROOT = Path(__file__).resolve().parents[1]


def run_python(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True)


@pytest.mark.skipif(os.environ.get("QKRUM_REQUIRE_NATIVE") != "1",
                    reason="only where the extension must exist (CI sets QKRUM_REQUIRE_NATIVE=1)")
def test_extension_is_built_and_reports_its_build():
    assert qkrum.IMPLEMENTATION == "native"
    info = qkrum.build_info()
    assert info["implementation"] == "native" and info["version"] == qkrum.__version__
    assert info["cplusplus"] >= 201703


def test_python_implementation_can_be_forced():
    out = run_python("import qkrum; print(qkrum.IMPLEMENTATION)", QKRUM_IMPLEMENTATION="python")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "python"


def test_bad_implementation_value_is_rejected():
    out = run_python("import qkrum", QKRUM_IMPLEMENTATION="fortran")
    assert out.returncode != 0 and "QKRUM_IMPLEMENTATION must be 'native' or 'python'" in out.stderr


def test_one_module_says_which_implementation_runs(monkeypatch):
    from qkrum import _native
    from qkrum.anneal import _python

    assert {"IMPLEMENTATION", "build_info", "core", "impl", "name"} <= set(_native.__all__)
    assert qkrum.IMPLEMENTATION == _native.IMPLEMENTATION == _native.name()
    assert _native.build_info()["implementation"] == _native.name()
    assert (_native.impl() is _native.core) if _native.core is not None else (_native.impl() is _python)
    monkeypatch.setattr(_native, "core", None)  # what QKRUM_IMPLEMENTATION=python does
    assert _native.name() == "python" and _native.impl() is _python
    assert _native.build_info() == {"implementation": "python"}


def test_forced_python_dispatches_to_the_fallback():
    code = ("from qkrum import _native; from qkrum.anneal import ExactSolver, SimulatedAnnealingSampler; "
            "print(_native.name(), _native.impl().__name__, ExactSolver().properties['implementation'], "
            "SimulatedAnnealingSampler().properties['implementation'], _native.MAX_EXHAUSTIVE_VARIABLES)")
    out = run_python(code, QKRUM_IMPLEMENTATION="python")
    assert out.returncode == 0, out.stderr
    from qkrum import _native

    assert out.stdout.split() == ["python", "qkrum.anneal._python", "python", "python",
                                  str(_native.MAX_EXHAUSTIVE_VARIABLES)]


def test_exhaustive_limit_is_defined_once_in_cpp():
    """kMaxExhaustiveVariables in csrc/anneal.hpp is the limit everywhere: the extension
    exports it, Python reads it, and the copy used without an extension equals it."""
    from qkrum import _native
    from qkrum.anneal import ExactSolver, exact

    header = (ROOT / "csrc" / "anneal.hpp").read_text()
    (value,) = re.findall(r"constexpr std::int64_t kMaxExhaustiveVariables = (\d+);", header)
    limit = int(value)
    assert _native._MAX_EXHAUSTIVE_VARIABLES_WITHOUT_CORE == limit
    assert _native.MAX_EXHAUSTIVE_VARIABLES == exact.MAX_EXHAUSTIVE_VARIABLES == limit
    assert ExactSolver().properties["max_num_variables"] == limit
    if _native._built is not None:
        assert _native._built.MAX_EXHAUSTIVE_VARIABLES == limit


def test_samplers_declare_cardinality():
    """dimod's capability declaration: qkrum's samplers keep a cardinality constraint."""
    from qkrum.anneal import ExactSolver, SimulatedAnnealingSampler

    assert "cardinality" in ExactSolver().parameters
    assert "cardinality" in SimulatedAnnealingSampler().parameters


def _cxx():
    for candidate in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.mark.skipif(_cxx() is None, reason="no C++ compiler")
def test_portable_generic_code_matches_the_intrinsics(tmp_path):
    """csrc/portable.hpp's generic code (forced by QKRUM_PORTABLE_FORCE_GENERIC) gives the
    intrinsics' results, and the annealer's, exact solver's and tabu search's outputs do not change."""
    cmd = [_cxx(), "-std=c++17", "-O1", "-I", str(ROOT / "csrc"), str(ROOT / "csrc" / "portable_check.cpp"),
           str(ROOT / "csrc" / "anneal.cpp"), str(ROOT / "csrc" / "tabu.cpp"), "-pthread"]
    builds = {"builtin": [], "generic": ["-DQKRUM_PORTABLE_FORCE_GENERIC"]}
    compiling = {name: subprocess.Popen(cmd + flags + ["-o", str(tmp_path / name)], stderr=subprocess.PIPE, text=True)
                 for name, flags in builds.items()}
    outputs = {}
    for name, proc in compiling.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        run = subprocess.run([str(tmp_path / name)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        outputs[name] = run.stdout.splitlines()
    assert outputs["builtin"][0].endswith("mismatches=0") and outputs["generic"][0].endswith("mismatches=0")
    assert len(outputs["builtin"]) > 20
    assert outputs["builtin"] == outputs["generic"]
