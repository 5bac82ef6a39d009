"""The README's two commands are the ones CI and users run; keep them true."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_two_commands():
    main_job, tests = readme_commands()
    assert main_job.endswith("python -m benchmarks.scaling --clients 500")
    assert tests.endswith("python -m pytest")


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    _, tests = readme_commands()
    assert tests in ci_lines
