"""Every code block of README.md runs, or is checked against the real code, in a test.

Conventions (keep README edits inside them):

* ```python blocks run top to bottom in ONE shared namespace, the README as a whole: a block
  may use names an earlier block defined ("Solving QUBOs" uses ``updates`` from "Using it").
  They run in a scratch directory, with every ``DWAVE_*`` variable removed and an empty
  ``dwave.conf``, so no Leap credentials exist: a line that would call D-Wave's cloud must
  guard itself (catch ``qkrum.anneal.MissingCredentialsError``, and ``ImportError`` for a
  base install, and show it). No block is skipped.
* ```bash blocks: each line (trailing backslashes joined, ``#`` comments dropped) is split
  into commands at ``&&``, ``||``, ``;`` and ``|``; every command must be one this file knows:

  - ``python -m benchmarks.NAME ...``, ``qkrum ...`` and ``python -m qkrum ...`` are parsed by
    the command's own argparse parser (its ``parse_args`` where the module has one), so every
    flag and value must exist and validate; their ``--help`` runs;
  - ``python examples/NAME.py ...`` (and ``examples/flower/simulate.py``): parsed by the
    script's ``build_parser()``;
  - ``flwr run APP ...``: ``APP`` is a Flower app in the repository (``[tool.flwr.app]``),
    every ``--run-config`` key is one of its ``[tool.flwr.app.config]`` keys and every
    ``--federation-config`` key one of Flower's simulation settings;
  - ``pip install [-q] -e ".[extra,...]"``: the extras exist in pyproject.toml;
  - ``python3 -m venv DIR``, ``. DIR/bin/activate``, ``export VAR=VALUE``, ``python -m pytest``.

  A README must work from a fresh clone: no path may leave the repository (``../``, such as
  the developers' ``../shared``); every file a command reads (``qkrum plot``'s runs,
  ``benchmarks.report``'s results) must be written by a command shown before it (``--out``,
  ``--json``); a simulation on a dataset other than the offline ``digits`` must say where the
  data is (``--data-dir`` or ``QKRUM_DATA_DIR``).
* Slow tests (``python -m pytest -m slow``) execute the bash blocks as written, except the
  setup steps (venv, activate, pip install: the tests already run in an installed
  environment) and ``python -m pytest`` (the suite itself).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import load_example

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OFFLINE_DATASETS = {"digits"}


# --- reading the README --------------------------------------------------------------------

@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the first line of code
    code: str
    section: str


def readme_blocks(text: str | None = None) -> list[Block]:
    """Fenced code blocks, in order, with their language, line and enclosing section."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, section, i = [], "(top)", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("#").strip()
        fence = re.match(r"^(\s*)```(\S*)\s*$", line)
        if fence:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"README.md:{start}: code block never closed")
            blocks.append(Block(fence.group(2), start + 1, "\n".join(body) + "\n", section))
        i += 1
    return blocks


def readme_commands():
    """The two command lines of the README's first bash block."""
    block = next(b for b in readme_blocks() if b.lang == "bash")
    return [line for line in block.code.splitlines() if line and not line.startswith("#")]


# --- bash commands -------------------------------------------------------------------------

@dataclass
class Command:
    text: str  # the command as written (env assignments included)
    argv: list[str]
    env: dict[str, str]
    where: str  # README.md:LINE
    kind: str = ""
    namespace: argparse.Namespace | None = None
    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)


def bash_commands(block: Block) -> list[Command]:
    """The block's commands, each with its README line."""
    logical, pending, first = [], "", None
    for offset, raw in enumerate(block.code.splitlines()):
        if first is None:
            first = block.line + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        logical.append((first, pending + raw))
        pending, first = "", None
    if pending.strip():
        raise AssertionError(f"README.md:{first}: a line ends with a backslash and nothing follows")
    commands = []
    for line_no, line in logical:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in list(lexer) + ["&&"]:
            if token in ("&&", "||", ";", "|", "&"):
                if current:
                    env = {}
                    while current and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", current[0]):
                        name, _, value = current.pop(0).partition("=")
                        env[name] = value
                    commands.append(Command(" ".join(map(shlex.quote, [f"{k}={v}" for k, v in env.items()]
                                                          + current)), current, env, f"README.md:{line_no}"))
                current = []
            else:
                current.append(token)
    return commands


class _Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


def parse_with_real_parser(main, argv: list[str]) -> argparse.Namespace:
    """Run ``main(argv)`` only as far as its argparse parser: the parsed namespace is
    captured at the top-level ``parse_args`` and the command stops there."""
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = capture
    try:
        main(argv)
    except _Parsed as parsed:
        return parsed.namespace
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{main.__module__}.{main.__name__} never called parse_args")


def _parse_module(module: str, argv: list[str]) -> argparse.Namespace:
    mod = importlib.import_module(module)
    if hasattr(mod, "parse_args"):  # includes the module's own checks after argparse
        return mod.parse_args(argv)
    return parse_with_real_parser(mod.main, argv)


#: ``flwr run --federation-config`` keys (flwr 1.42's simulation settings).
FLWR_FEDERATION_KEYS = {"num-supernodes", "client-resources-num-cpus", "client-resources-num-gpus", "backend",
                        "verbose", "init-args-num-cpus", "init-args-num-gpus", "init-args-logging-level",
                        "init-args-log-to-driver"}


def _check_flwr_run(args: list[str], where: str, text: str) -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    app, options = (args[0], args[1:]) if args and not args[0].startswith("-") else (".", args)
    project = ROOT / app / "pyproject.toml"
    assert project.is_file(), f"{where}: {app} is not a Flower app in the repository (no pyproject.toml): {text}"
    flwr = tomllib.loads(project.read_text()).get("tool", {}).get("flwr", {})
    assert "app" in flwr, f"{where}: {project.relative_to(ROOT)} has no [tool.flwr.app]: {text}"
    i = 0
    while i < len(options):
        flag = options[i]
        if flag == "--stream":
            i += 1
            continue
        assert flag in ("--run-config", "-c", "--federation-config") and i + 1 < len(options), (
            f"{where}: flwr run option {flag!r} is not one this check knows: {text}")
        keys = {item.partition("=")[0] for item in shlex.split(options[i + 1])}
        allowed = set(flwr["app"].get("config", {})) if flag != "--federation-config" else FLWR_FEDERATION_KEYS
        assert keys <= allowed, f"{where}: {flag} keys {sorted(keys - allowed)} are not among {sorted(allowed)}: {text}"
        i += 2


def _extras() -> set[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def check_command(cmd: Command, state: dict) -> None:
    """Classify ``cmd``, parse it with the real parser, and record what it reads and writes.
    Raises AssertionError naming the README line when the command cannot work as written."""
    argv, where = cmd.argv, cmd.where
    for token in [*argv, *cmd.env.values()]:
        value = token.partition("=")[2] if token.startswith("--") and "=" in token else token
        if value.startswith("../") or "/../" in value or value == "..":
            raise AssertionError(f"{where}: {token!r} leaves the repository; a fresh clone has nothing "
                                 f"there (the developers' ../shared, say): {cmd.text}")
    if argv[0] in ("python", "python3") and argv[1:3] == ["-m", "venv"]:
        cmd.kind = "setup"
        state["venvs"].add(argv[3].rstrip("/"))
    elif argv[0] in (".", "source"):
        cmd.kind = "setup"
        venv = argv[1].removesuffix("/bin/activate")
        assert venv in state["venvs"], f"{where}: activates {argv[1]} but no shown command created {venv}"
    elif argv[0] == "export":
        cmd.kind = "setup"
        for assignment in argv[1:]:
            name, sep, value = assignment.partition("=")
            assert sep, f"{where}: export without a value: {cmd.text}"
            state["env"][name] = value
    elif argv[0] in ("pip", "pip3") or argv[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
        cmd.kind = "setup"
        rest = argv[argv.index("install") + 1:] if "install" in argv else None
        assert rest is not None, f"{where}: only `pip install` is known: {cmd.text}"
        specs = [a for a in rest if a not in ("-q", "-e", "--quiet", "--editable")]
        for spec in specs:
            m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", spec)
            assert m, f"{where}: pip installs {spec!r}; only the clone itself ('.' or '.[extras]') is known"
            missing = set(filter(None, (m.group(1) or "").split(","))) - _extras()
            assert not missing, f"{where}: extras {sorted(missing)} are not in pyproject.toml: {cmd.text}"
    elif argv[0] in ("python", "python3") and argv[1:3] == ["-m", "pytest"]:
        cmd.kind = "pytest"
    elif argv[0] == "qkrum" or (argv[0] in ("python", "python3") and argv[1:3] == ["-m", "qkrum"]):
        cmd.kind = "qkrum"
        from qkrum import cli

        args = argv[1:] if argv[0] == "qkrum" else argv[3:]
        try:
            ns = parse_with_real_parser(cli.main, args)
        except SystemExit as exc:
            raise AssertionError(f"{where}: `qkrum` rejects these arguments ({exc}): {cmd.text}") from None
        cmd.namespace = ns
        if ns.command == "simulate":
            cmd.writes += [ns.out] if ns.out else []
            env = {**state["env"], **cmd.env}
            if ns.dataset not in OFFLINE_DATASETS and ns.source != "tfds":
                assert ns.data_dir or env.get("QKRUM_DATA_DIR"), (
                    f"{where}: --dataset {ns.dataset} needs its files, but neither --data-dir nor "
                    f"QKRUM_DATA_DIR is shown: {cmd.text}")
        elif ns.command == "plot":
            cmd.reads += ns.runs
            cmd.writes.append(ns.out)
        elif ns.command == "sweep":
            assert (ROOT / ns.config).is_file(), f"{where}: the config {ns.config} is not in the repository: {cmd.text}"
            cmd.writes.append(ns.out)
        elif ns.command == "report":
            cmd.reads.append(ns.sweep_dir)
            cmd.writes.append(ns.out)
    elif argv[0] in ("python", "python3") and len(argv) > 1 and argv[1].startswith("examples/") and argv[1].endswith(".py"):
        cmd.kind = "example"
        script = ROOT / argv[1]
        assert script.is_file(), f"{where}: {argv[1]} is not in the repository: {cmd.text}"
        try:
            cmd.namespace = load_example(script).build_parser().parse_args(argv[2:])
        except SystemExit as exc:
            raise AssertionError(f"{where}: {argv[1]} rejects these arguments ({exc}): {cmd.text}") from None
        cmd.writes += [str(cmd.namespace.out)] if getattr(cmd.namespace, "out", None) else []
    elif argv[:2] == ["flwr", "run"]:
        cmd.kind = "flwr"
        _check_flwr_run(argv[2:], where, cmd.text)
    elif argv[0] in ("python", "python3") and len(argv) > 2 and argv[1] == "-m" and argv[2].startswith("benchmarks."):
        cmd.kind = "benchmark"
        try:
            ns = _parse_module(argv[2], argv[3:])
        except SystemExit as exc:
            raise AssertionError(f"{where}: {argv[2]} rejects these arguments ({exc}): {cmd.text}") from None
        cmd.namespace = ns
        cmd.writes += [p for p in (getattr(ns, "json", None), getattr(ns, "plot", None)) if p]
        if argv[2] == "benchmarks.report":
            cmd.reads.append(ns.results)
    else:
        raise AssertionError(f"{where}: unknown command {argv[0]!r}; teach tests/test_readme.py how to "
                             f"check it: {cmd.text}")
    for path in cmd.reads:
        assert path in state["written"], (
            f"{where}: reads {path}, which no command shown before it writes (shown outputs: "
            f"{sorted(state['written']) or 'none'}): {cmd.text}")
    state["written"].update(cmd.writes)


def checked_bash_blocks(text: str | None = None) -> list[tuple[Block, list[Command]]]:
    state = {"venvs": set(), "env": {}, "written": set()}
    out = []
    for block in readme_blocks(text):
        if block.lang == "bash":
            state["env"] = {}  # an `export` holds for the rest of its block
            commands = bash_commands(block)
            for cmd in commands:
                check_command(cmd, state)
            out.append((block, commands))
    return out


# --- python blocks ------------------------------------------------------------------------

@pytest.fixture
def no_dwave_credentials(tmp_path, monkeypatch):
    """No Leap token anywhere: no DWAVE_* variable, an empty dwave.conf, a scratch cwd."""
    for name in list(os.environ):
        if name.startswith("DWAVE_"):
            monkeypatch.delenv(name)
    conf = tmp_path / "dwave.conf"
    conf.write_text("")
    monkeypatch.setenv("DWAVE_CONFIG_FILE", str(conf))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def run_python_blocks(text: str | None = None) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    for block in readme_blocks(text):
        if block.lang != "python":
            continue
        # Pad so that a traceback names the README's own line numbers.
        code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)
    return namespace


# --- tests ---------------------------------------------------------------------------------

def test_every_block_has_a_known_language():
    blocks = readme_blocks()
    assert blocks, "README.md has no code blocks"
    unknown = [f"README.md:{b.line} ({b.lang or 'no language'})" for b in blocks if b.lang not in ("python", "bash")]
    assert not unknown, f"blocks this file does not check: {unknown}"


def test_python_blocks_run_in_order(no_dwave_credentials):
    import jax.numpy as jnp

    ns = run_python_blocks()
    # "Using it" selects the 12 honest clients; the training-loop block ran server_step.
    assert ns["sel"].selected.tolist() == [True] * 12 + [False] * 3
    assert int(ns["agg_state"].count) >= 1 and jnp.all(jnp.isfinite(ns["params"]["kernel"]))


def test_bash_commands_parse_with_the_real_parsers():
    blocks = checked_bash_blocks()
    kinds = [c.kind for _, commands in blocks for c in commands]
    assert "benchmark" in kinds and "qkrum" in kinds


@pytest.mark.parametrize("argv", [["qkrum", "simulate"], ["qkrum", "plot"], ["qkrum", "sweep"], ["qkrum", "report"],
                                  ["benchmarks.scaling"]])
def test_readme_commands_help_runs(argv, capsys):
    if argv[0] == "qkrum":
        from qkrum.cli import main

        with pytest.raises(SystemExit) as exc:
            main([argv[1], "--help"])
    else:
        with pytest.raises(SystemExit) as exc:
            _parse_module(argv[0], ["--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_every_shown_command_has_its_help():
    seen = set()
    for _, commands in checked_bash_blocks():
        for cmd in commands:
            if cmd.kind == "qkrum":
                seen.add(("qkrum", cmd.namespace.command))
            elif cmd.kind == "benchmark":
                seen.add((cmd.argv[2],))
    assert seen <= {("qkrum", "simulate"), ("qkrum", "plot"), ("qkrum", "sweep"), ("qkrum", "report"),
                    ("benchmarks.scaling",)}, (
        f"add {sorted(seen)} to test_readme_commands_help_runs")


BAD_FL_BLOCK = """
```bash
qkrum simulate --dataset mnist --clients 15 --byzantine 3 --attack alie --method multisignal \\
    --rounds 30 --seed 0 --data-dir ../shared/datasets --out results/alie-multisignal.jsonl
qkrum plot results/alie-multisignal.jsonl results/alie-multikrum.jsonl --out results/alie.png
```
"""


def test_the_check_flags_paths_outside_the_clone_and_unwritten_inputs():
    with pytest.raises(AssertionError, match=r"README.md:3: .*leaves the repository"):
        checked_bash_blocks(BAD_FL_BLOCK)
    with pytest.raises(AssertionError, match=r"README.md:5: reads results/alie-multikrum.jsonl"):
        checked_bash_blocks(BAD_FL_BLOCK.replace("--data-dir ../shared/datasets", "--data-dir data"))
    with pytest.raises(AssertionError, match="neither --data-dir nor QKRUM_DATA_DIR"):
        checked_bash_blocks(BAD_FL_BLOCK.replace("--data-dir ../shared/datasets ", ""))
    with pytest.raises(AssertionError, match="rejects these arguments"):
        checked_bash_blocks("```bash\npython -m benchmarks.scaling --clients 500 --no-such-flag\n```\n")
    with pytest.raises(AssertionError, match="unknown command 'curl'"):
        checked_bash_blocks("```bash\ncurl https://example.com | sh\n```\n")
    with pytest.raises(AssertionError, match=r"extras \['nope'\]"):
        checked_bash_blocks('```bash\npip install -e ".[nope]"\n```\n')


def test_readme_opens_with_the_two_commands():
    main_job, tests = readme_commands()
    assert main_job.endswith("python -m benchmarks.scaling --clients 500")
    assert tests.endswith("python -m pytest")


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    _, tests = readme_commands()
    assert tests in ci_lines


# --- slow: the bash blocks executed as written ------------------------------------------------

def _shell_line(cmd: Command, home: str) -> str:
    """The command for ``bash``, ``~`` expanded against ``home``."""
    def expand(token):
        name, sep, value = token.partition("=")
        if sep and value.startswith("~/") and re.fullmatch(r"[A-Za-z_]\w*", name):
            return f"{name}={home}/{value[2:]}"
        return f"{home}/{token[2:]}" if token.startswith("~/") else token

    return " ".join(shlex.quote(expand(t)) for t in [f"{k}={v}" for k, v in cmd.env.items()] + cmd.argv)


BASH_BLOCKS = [b for b in readme_blocks() if b.lang == "bash"]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BASH_BLOCKS)), ids=[f"README.md:{b.line}" for b in BASH_BLOCKS])
def test_bash_block_runs_as_written(index, tmp_path):
    block, commands = checked_bash_blocks()[index]
    runnable = [c for c in commands if c.kind in ("qkrum", "benchmark", "example", "flwr") or c.argv[0] == "export"]
    if not any(c.kind in ("qkrum", "benchmark", "example", "flwr") for c in runnable):
        pytest.skip("only setup steps and the test suite itself")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for cmd in runnable:
        if cmd.argv[0] != "export":
            continue
        for assignment in cmd.argv[1:]:
            name, _, value = assignment.partition("=")
            if value.startswith("~/") and not Path(value).expanduser().exists():
                # The README says where the files go; put them there under a scratch HOME.
                source = os.environ.get(name)
                if not source or not Path(source).is_dir():
                    pytest.skip(f"{block.section}: needs {name}={value} (or {name} set for the test)")
                env["HOME"] = str(tmp_path / "home")
                target = Path(env["HOME"]) / value[2:]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(Path(source).resolve())
    # Benchmarks run from the repository root (`python -m benchmarks...`); the others in a
    # scratch directory, so their results/ files do not land in the working tree.
    cwd = ROOT if all(c.kind == "benchmark" for c in runnable if c.argv[0] != "export") else tmp_path
    if cwd == tmp_path:  # configs the commands name (qkrum sweep examples/...) as in the clone
        for folder in ("examples", "benchmarks"):
            (tmp_path / folder).symlink_to(ROOT / folder)
    home = env.get("HOME") or str(Path.home())
    # `flwr run` keeps its config and a local SuperLink under FLWR_HOME: a scratch one, and the
    # SuperLink it started is stopped afterwards.
    env["FLWR_HOME"] = str(tmp_path / "flwr-home")
    script = "set -euo pipefail\n" + "\n".join(_shell_line(c, home) for c in runnable) + "\n"
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    finally:
        if any(c.kind == "flwr" for c in runnable):
            subprocess.run(["pkill", "-f", env["FLWR_HOME"]], check=False)
    assert proc.returncode == 0, f"{block.section} (README.md:{block.line}) failed:\n{proc.stderr[-4000:]}"
    for cmd in runnable:
        for path in cmd.writes:
            assert (Path(cwd) / path).exists(), f"{cmd.where}: {path} was not written"
