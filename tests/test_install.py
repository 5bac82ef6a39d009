"""The install's shape: a small core, optional dependencies behind named extras.

A real core-only install is checked by ``.ci/slim_check.py`` (CI runs it in a second venv);
these are the fast checks of the declarations and of the error message.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from qkrum._optional import require

ROOT = Path(__file__).resolve().parent.parent
CORE = {"jax", "numpy", "dimod", "optax"}


def _project() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The distribution name of a PEP 508 requirement, normalised (PEP 503)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def _expand(extra: str, extras: dict[str, list[str]], seen: frozenset = frozenset()) -> set[str]:
    """The requirements of ``extra``, with self-references (``qkrum[fl,plot]``) expanded."""
    assert extra in extras, f"extra {extra!r} is referenced but not defined"
    assert extra not in seen, f"extras reference each other in a cycle: {sorted(seen)}"
    out = set()
    for req in extras[extra]:
        ref = re.fullmatch(r"\s*qkrum\[([\w,\s-]+)\]\s*", req)
        if ref:
            for sub in ref.group(1).split(","):
                out |= _expand(sub.strip(), extras, seen | {extra})
        else:
            assert _name(req) != "qkrum", f"extra {extra!r}: {req!r}"
            out.add(req)
    return out


def test_core_dependencies_are_exactly_the_four():
    # (tomli only where tomllib is missing: Python 3.10, for sweep configs.)
    deps = _project()["dependencies"]
    assert {_name(r) for r in deps if "python_version" not in r} == CORE
    assert [r for r in deps if "python_version" in r] == ["tomli>=2; python_version < '3.11'"]


def test_all_contains_every_other_extra():
    extras = _project()["optional-dependencies"]
    assert {"fl", "plot", "bench", "sweep", "flower", "dwave", "tfds", "test", "all"} <= set(extras)
    everything = _expand("all", extras)
    for extra in extras:
        if extra != "all":
            missing = _expand(extra, extras) - everything
            assert not missing, f"'all' lacks {sorted(missing)} of extra {extra!r}"


def test_extras_hold_what_their_features_import():
    extras = _project()["optional-dependencies"]
    names = {extra: {_name(r) for r in _expand(extra, extras)} for extra in extras}
    assert {"flax", "scikit-learn", "tqdm"} <= names["fl"]
    assert names["plot"] == {"matplotlib"}
    assert names["fl"] | names["plot"] | {"tqdm", "dwave-samplers"} <= names["bench"]
    assert {"tensorflow-datasets", "importlib-resources"} <= names["tfds"]
    assert names["bench"] | {"pytest", "hypothesis", "scipy", "dwave-system"} <= names["test"]
    # qkrum.flower and its tests (run_simulation needs Flower's simulation extra, i.e. Ray).
    assert names["flower"] == {"flwr"} and any("flwr[simulation]" in r for r in extras["flower"])
    assert {"flwr", "ray"} <= names["test"]
    # The core never sneaks into an extra with other bounds than its own.
    core = {_name(r): r for r in _project()["dependencies"]}
    for extra, reqs in extras.items():
        for r in _expand(extra, extras):
            assert _name(r) not in core or r == core[_name(r)], f"extra {extra!r} re-pins {r!r}"


def test_require_returns_the_module():
    import json

    assert require("json", "fl", "anything") is json


def test_require_names_the_extra(monkeypatch):
    # Makes `import flax.linen` fail as when not installed, also after other tests imported it.
    monkeypatch.setitem(sys.modules, "flax", None)
    monkeypatch.setitem(sys.modules, "flax.linen", None)
    with pytest.raises(ModuleNotFoundError) as exc:
        require("flax.linen", "fl", "the FL simulation")
    assert str(exc.value) == ("the FL simulation needs flax, which is not installed; "
                              "install it with: pip install 'qkrum[fl]'")
    assert isinstance(exc.value.__cause__, ImportError)


def test_require_names_the_distribution():
    with pytest.raises(ImportError, match=r"^the 'digits' dataset needs scikit-learn, which is not installed; "
                                          r"install it with: pip install 'qkrum\[fl\]'$"):
        require("no_such_module_qkrum.datasets", "fl", "the 'digits' dataset", package="scikit-learn")


def test_require_tells_a_broken_install_from_a_missing_one(tmp_path, monkeypatch):
    # Installed, but one of its own imports is missing: not "not installed".
    (tmp_path / "qkrum_fake_optional.py").write_text("import qkrum_fake_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as exc:
        require("qkrum_fake_optional", "plot", "a plot")
    msg = str(exc.value)
    assert "installed but does not import" in msg and "qkrum_fake_missing_dependency" in msg
    assert "pip install 'qkrum[plot]'" in msg and not isinstance(exc.value, ModuleNotFoundError)


def test_cli_help_and_fl_imports_need_no_flax(monkeypatch, capsys):
    """Without flax `qkrum --help` works and `qkrum simulate` exits naming the extra (the
    slim install checks the same for real)."""
    import qkrum.fl
    from qkrum import cli

    monkeypatch.setitem(sys.modules, "flax", None)
    monkeypatch.setitem(sys.modules, "flax.linen", None)
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", "--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", "--rounds", "1"])
    assert exc.value.code == 2 and "pip install 'qkrum[fl]'" in capsys.readouterr().err
    with pytest.raises(ImportError, match=r"pip install 'qkrum\[fl\]'"):
        qkrum.fl.models._module_classes.__wrapped__()  # what model_for's first call runs (uncached)


def test_image_shapes_are_written_once():
    from qkrum.fl import data, models

    assert set(data.IMAGE_SHAPES) == set(data.DATASETS) == set(models.MODEL_FOR_DATASET)
    assert all(models.input_shape_for(d) == data.IMAGE_SHAPES[d] for d in data.DATASETS)
    assert not hasattr(data, "_SHAPES") and not hasattr(models, "_INPUT_SHAPES")


def test_flax_modules_defined_on_first_use():
    from qkrum.fl import models

    assert models.MLP.__qualname__ == "MLP" and models.CNN.__module__ == "qkrum.fl.models"
    assert isinstance(models.model_for("digits").module, models.MLP)
    assert isinstance(models.model_for("cifar10").module, models.CNN)
    with pytest.raises(AttributeError, match="no attribute 'RNN'"):
        models.RNN
