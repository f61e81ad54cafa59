"""The README tells the truth: its first command is what CI runs, and "What a run prints" is what that run prints."""

import re
import shlex
from pathlib import Path

from flyersim.sim.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _first_command():
    """The ``flyersim ...`` command of the README's first code block (the set-up line)."""
    block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    return "flyersim " + block.splitlines()[0].split("&& flyersim ", 1)[1]


def test_ci_smoke_runs_the_readme_first_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _first_command() in ci


def test_what_a_run_prints_is_what_it_prints(capsys):
    section = README.split("## What a run prints", 1)[1]
    block = section.split("```\n", 1)[1].split("```", 1)[0]
    command, *shown = block.rstrip("\n").splitlines()
    assert command == "$ " + _first_command()
    assert main(shlex.split(command)[2:]) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    assert printed == shown, "re-run the command and paste its output into the README"
    assert re.match(r"# Avg bus bandwidth +: [0-9.]+ GB/s \(ring\)", printed[-1])
