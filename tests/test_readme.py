"""Every command in a README code block runs as typed, or is marked as an example.

A line of a ``bash`` block is a command unless it has a ``# example`` comment. Commands are checked
fast:

- ``make TARGET``: ``make -n TARGET`` (a dry run: the target exists and its recipe expands);
- ``tfxai models|methods|metrics`` and ``--help`` run for real;
- ``tfxai attribute``/``evaluate`` run the CLI for real up to the pipeline, which is replaced by a
  stub (the options parse, the defaults resolve, the run is configured);
- other ``tfxai`` commands are parsed by click (options and arguments exist and validate).

No line may be a shell pipe or list (``tfxai models | methods`` ran as a pipe). ``python`` blocks
run with ``tfxai.load_model`` returning a tiny model.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from tfxai.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TFXAI = ("tfxai", ".venv/bin/tfxai")
RUN_FOR_REAL = {"models", "methods", "metrics"}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _lines() -> list[str]:
    return [line.strip() for block in _blocks("bash") for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _is_example(line: str) -> bool:
    _, hash_, comment = line.partition("#")
    return bool(hash_) and comment.strip().lower().startswith("example")


COMMANDS = [line for line in _lines() if not _is_example(line)]


def test_the_readme_lists_the_commands_a_new_user_needs():
    words = {" ".join(shlex.split(c, comments=True)) for c in COMMANDS}
    for expected in ("make demo", "make test", ".venv/bin/tfxai --help", "tfxai models",
                     "tfxai methods", "tfxai metrics", "tfxai evaluate --metric iou --model "
                     "efficientnet_lite0"):
        assert expected in words, expected
    examples = [line for line in _lines() if _is_example(line)]
    assert any(line.startswith("source .venv/bin/activate") for line in examples)


def test_no_command_is_a_shell_pipe_or_list():
    for line in COMMANDS:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        ops = [t for t in lexer if t and set(t) <= set("|&;<>()")]
        assert not ops, f"{line!r} holds shell operators {ops}: write one command per line"


def _parse_only(args: list[str]) -> None:
    """Click parses ``tfxai ARGS`` (options exist, values validate) without running it."""
    parent = click.Context(main, info_name="tfxai")
    command = main.get_command(parent, args[0])
    assert command is not None, f"tfxai has no command {args[0]!r}"
    command.make_context(args[0], list(args[1:]), parent=parent)


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_runs(line, tmp_path, monkeypatch):
    tokens = shlex.split(line, comments=True)
    if tokens[0] == "make":
        if shutil.which("make") is None:
            pytest.skip("make is not installed")
        res = subprocess.run(["make", "-n", *tokens[1:]], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return
    assert tokens[0] in TFXAI, f"{line!r}: not a tfxai or make command; mark it '# example'"
    args = tokens[1:]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFXAI_SAMPLES_DIR", str(tmp_path / "samples"))
    if args[0] in RUN_FOR_REAL or "--help" in args:
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert res.output.strip()
        return
    if args[0] in ("attribute", "evaluate"):
        import tfxai.run

        configs = []
        stub = lambda cfg: configs.append(cfg) or tfxai.run.RunSummary(out=tmp_path)  # noqa: E731
        monkeypatch.setattr(tfxai.run, f"run_{args[0]}", stub)
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        (cfg,) = configs
        assert cfg.methods and Path(cfg.images).exists()
        return
    _parse_only(args)


def test_readme_python_runs(tiny_cnn_file, tmp_path, monkeypatch):
    import tfxai

    (code,) = _blocks("python")
    tiny = tfxai.load_model(str(tiny_cnn_file))
    monkeypatch.setattr(tfxai, "load_model", lambda *a, **k: tiny)
    monkeypatch.setenv("TFXAI_SAMPLES_DIR", str(tmp_path / "samples"))
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - the README's own example
    assert ns["data"].images.shape == (6, 32, 32, 3)
    for name in ("iou", "infidelity"):
        assert ns[name].shape == (6,) and np.isfinite(ns[name]).all(), name
