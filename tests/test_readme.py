"""The README's code is part of the project: it runs as written, and drift from the code fails here.

- Blocks fenced ```` ```python ```` are the API tour. They run in order, in one namespace, in a
  fresh folder (the tour writes one small weights file), on the CPU in seconds.
- Blocks fenced ```` ```python no-run ```` need files the project does not ship (published
  weights). They run here too, on stand-ins of the same structure that the test writes (random
  weights), so a renamed function or argument fails.
- Every `smae` command in a shell block, and every inline `smae ... --flag` span, of the README
  and of the docs it links, is parsed by the real argument parser (nothing runs), and its
  `--set` keys are applied to the command's config, so a renamed flag or field fails here.
- Repository paths they name in backticks, and the docs they link to, exist.
"""
from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
DOC_LINK = re.compile(r"\]\(((?:docs/)[^)#\s]+)(?:#([^)\s]+))?\)")
REPO_PATH = re.compile(r"^(?:smae|kernels|bench|tests|docs|\.ci)/[\w./-]*$")
SHELL_FENCES = {"bash", "sh", "shell", "console"}


def _blocks(text: str) -> list[tuple[str, str]]:
    """(info string, code) of every fenced block, in order."""
    return [(info.strip(), code) for info, code in FENCE.findall(text)]


def _linked_docs() -> list[Path]:
    return sorted({REPO / link for link, _ in DOC_LINK.findall(README.read_text(encoding="utf-8"))})


def _pages() -> list[Path]:
    """The README and the docs it links to: what a reader follows."""
    return [README] + [page for page in _linked_docs() if page.exists()]


def _without_fences(text: str) -> str:
    return FENCE.sub("", text)


def test_api_tour_runs_as_written(tmp_path, monkeypatch):
    tour = [code for info, code in _blocks(README.read_text(encoding="utf-8")) if info == "python"]
    assert tour, "README.md has no ```python block (the API tour)"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_tour"}
    for number, code in enumerate(tour, 1):
        exec(compile(code, f"README.md python block {number}", "exec"), namespace)


def _write_stand_in(name: str) -> None:
    """A small file with the structure of the published one named `name` (random weights)."""
    import torch

    import smae

    if name == "dino_deitsmall16_pretrain.pth":  # DINO's backbone: a plain state dict, timm names
        torch.save(smae.build_encoder("vits16").state_dict(), name)
    elif name == "checkpoint-399.pth":  # CropMAE's training checkpoint: the model under "model"
        torch.save({"model": smae.build_model("vits16").state_dict(), "epoch": 399}, name)
    else:
        pytest.fail(f"README no-run block reads {name}: give it a stand-in in tests/test_readme.py")


def test_no_run_blocks_run_on_stand_in_files(tmp_path, monkeypatch):
    """The published-weights lines, run on files of the same structure that the test writes."""
    blocks = [code for info, code in _blocks(README.read_text(encoding="utf-8")) if info.split()[:2] == ["python", "no-run"]]
    assert blocks, "README.md has no ```python no-run block (the published-weights lines)"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        files = {node.value for node in ast.walk(ast.parse(code))
                 if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith((".pth", ".pt"))}
        assert files, f"a no-run block reads no weights file, so it can run as a ```python block:\n{code}"
        for name in sorted(files):
            _write_stand_in(name)
        exec(compile("import smae\n" + code, "README.md no-run block", "exec"), {"__name__": "readme_no_run"})


def _shell_commands(text: str) -> list[str]:
    """The commands of the shell blocks, continuation lines joined, split at && ; |."""
    commands = []
    for info, code in _blocks(text):
        if info.split()[:1] and info.split()[0] in SHELL_FENCES:
            for line in code.replace("\\\n", " ").splitlines():
                commands += [part for part in re.split(r"&&|;|\|", line) if part.strip()]
    return commands


def _smae_arguments(command: str) -> list[str] | None:
    """The arguments after `smae` (or `torchrun ... -m smae`); None for another program."""
    tokens = shlex.split(command, comments=True)
    while tokens and (tokens[0] == "export" or re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0])):
        tokens = tokens[1:]
    if tokens[:1] == ["smae"]:
        return tokens[1:]
    if tokens[:1] == ["torchrun"] and "-m" in tokens:
        at = tokens.index("-m")
        if tokens[at + 1:at + 2] == ["smae"]:
            return tokens[at + 2:]
    return None


def _documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        spans = [span for span in INLINE_CODE.findall(_without_fences(text)) if span.startswith("smae ") and " --" in span]
        for command in _shell_commands(text) + spans:
            arguments = _smae_arguments(command)
            if arguments is not None:
                found.append((f"{page.name}: {command.strip()}", arguments))
    return found


def _check_overrides(args) -> None:
    """Applies a command's --set keys to its config, as the command does first."""
    from smae.config import apply_overrides

    if not getattr(args, "overrides", None):
        return
    if args.command == "pretrain":
        from smae.train.config import train_preset

        assert args.preset, "--set without --preset (a --resume run's keys are checked against its saved config)"
        apply_overrides(train_preset(args.preset), args.overrides)
    elif args.command == "propagate":
        from smae.propagation.protocols import protocol_preset

        apply_overrides(protocol_preset(args.protocol, args.task), args.overrides)


def test_every_documented_command_parses():
    from smae.cli import build_parser

    commands = _documented_commands()
    assert len(commands) >= 10, f"found only {len(commands)} smae commands in the README and its docs"
    parser = build_parser()
    for where, arguments in commands:
        if "--help" in arguments:  # parsing would print the help; the command must exist
            assert arguments[0] in parser._subparsers._group_actions[0].choices, where
            continue
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                args = parser.parse_args(arguments)
        except SystemExit:
            pytest.fail(f"{where}\n  is refused by the command line: {stderr.getvalue().strip()}")
        try:
            _check_overrides(args)
        except (ValueError, AssertionError) as error:
            pytest.fail(f"{where}\n  --set: {error}")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_named_paths_and_linked_docs_exist():
    missing = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        tokens = [token for span in INLINE_CODE.findall(_without_fences(text)) for token in span.split()]
        tokens += [token for command in _shell_commands(text) for token in shlex.split(command, comments=True)]
        for token in tokens:
            if REPO_PATH.match(token) and not (REPO / token).exists():
                missing.append(f"{page.name}: {token}")
    for link, anchor in DOC_LINK.findall(README.read_text(encoding="utf-8")):
        target = REPO / link
        if not target.exists():
            missing.append(f"README.md links to {link}")
        elif anchor:
            headings = re.findall(r"^#+ (.+)$", _without_fences(target.read_text(encoding="utf-8")), re.MULTILINE)
            if anchor not in {_anchor(heading) for heading in headings}:
                missing.append(f"README.md links to {link}#{anchor}: no such heading")
    assert not missing, "named in the docs but not in the repository:\n" + "\n".join(missing)


def test_install_steps_are_ci_s():
    """The README's set-up lines pin the torch that CI installs, and its test command is CI's."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    readme = README.read_text(encoding="utf-8")
    ci_torch = set(re.findall(r"torch==[\w.+]+", ci))
    assert len(ci_torch) == 1
    assert set(re.findall(r"torch==[\w.+]+", readme)) == ci_torch
    assert re.search(r"^pytest tests$", ci, re.MULTILINE)
    assert any(command.strip() == "pytest tests" for command in _shell_commands(readme))


def test_device_record_markers_frame_one_block():
    text = README.read_text(encoding="utf-8")
    begin, end = "<!-- device-record:begin -->", "<!-- device-record:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end)
