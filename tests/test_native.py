"""The native extension switch: required in CI, forced off by QKRUM_IMPLEMENTATION."""

import os
import subprocess
import sys

import pytest

import qkrum


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
