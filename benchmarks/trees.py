"""Run one measurement per code tree: a benchmark's child process with a checkout of the project
first on the path, so two revisions are measured on the same data, each in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_in_trees(script: str, arguments: list[str], trees: list[Path]) -> list[dict]:
    """`python script *arguments --one` once per tree; each child prints its figures as JSON on
    its last line. Returns them with the tree and its short revision; a failed child stops the
    benchmark with its error."""
    runs = []
    for tree in trees:
        tree = Path(tree).resolve()
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, script, *arguments, "--one"]
        child = subprocess.run(command, capture_output=True, text=True, env=env)
        if child.returncode:
            raise SystemExit(f"{tree}: the measurement failed:\n{child.stderr[-3000:]}")
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        runs.append({"tree": str(tree), "code": revision(tree), **figures})
        print(json.dumps(runs[-1]), flush=True)
    return runs


def revision(tree: Path) -> str:
    """The short revision of the checkout at `tree`."""
    return subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
