"""The README's command lines against the real command line: every command it shows exists,
every flag it shows is one of that command's, and every choice list it spells out (``--size
tiny|small|...``) is the command's own, so the usage a user copies cannot drift from ``--help``."""

import re
from pathlib import Path

import click

from flows.cli import cli

README = Path(__file__).resolve().parents[2] / "README.md"
CHOICES = re.compile(r"[a-z0-9-]+(\|[a-z0-9-]+)+")  # literal choices; DIR, PATH and FILE are placeholders


def readme_command_lines(text: str) -> list[str]:
    """``handbooster ...`` commands of the README's bash blocks (continuations joined, comments
    cut, commands chained with ``;`` or ``&&`` taken one by one) and of its inline code."""
    lines = re.findall(r"`(handbooster [^`]*)`", text)
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for command in re.split(r";|&&", line.split(" #", 1)[0]):
                if command.strip().startswith("handbooster "):
                    lines.append(command.strip())
    return lines


def usage_problems(line: str) -> list[str]:
    tokens = [token.strip("[]") for token in line.split()[1:]]
    context = click.Context(cli)
    command, path = cli, ["handbooster"]
    while tokens and isinstance(command, click.Group):
        sub = command.get_command(context, tokens[0])
        if sub is None:
            return [f"{' '.join(path)} has no command {tokens[0]!r}"]
        command, path = sub, path + [tokens.pop(0)]
    if isinstance(command, click.Group):
        return [f"{' '.join(path)} is a group, not a command"]
    name = " ".join(path)
    options = {flag: param for param in command.params for flag in param.opts}
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    problems = []
    positional = [token for index, token in enumerate(tokens)
                  if not token.startswith("-") and (index == 0 or not tokens[index - 1].startswith("--"))]
    for argument, token in zip(arguments, positional):
        if isinstance(argument.type, click.Choice) and CHOICES.fullmatch(token) \
                and set(token.split("|")) != set(argument.type.choices):
            problems.append(f"{name} {token}: the command takes {'|'.join(argument.type.choices)}")
    for index, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        if token not in options:
            problems.append(f"{name} has no {token}")
            continue
        value = tokens[index + 1] if index + 1 < len(tokens) else ""
        kind = options[token].type
        if isinstance(kind, click.Choice) and CHOICES.fullmatch(value) and set(value.split("|")) != set(kind.choices):
            problems.append(f"{name} {token} {value}: the command takes {'|'.join(kind.choices)}")
    return problems


def test_the_readme_shows_the_command_line_as_it_is():
    lines = readme_command_lines(README.read_text(encoding="utf-8"))
    assert len(lines) > 30  # the usage block and the sections' examples were found
    problems = [problem for line in lines for problem in usage_problems(line)]
    assert problems == []


def test_the_check_catches_drift():
    assert usage_problems("handbooster data demo --out DIR --size small|large") == [
        "handbooster data demo --size small|large: the command takes tiny|small|bench|medium|large"]
    assert usage_problems("handbooster synth train --data DIR --presets tiny") == [
        "handbooster synth train has no --presets"]
    assert usage_problems("handbooster data import dexycb|ho3d ROOT --out DIR") == [
        "handbooster data import dexycb|ho3d: the command takes dexycb|ho3d|handoccnet-json"]
    assert usage_problems("handbooster synth paint --out DIR") == ["handbooster synth has no command 'paint'"]
    assert usage_problems("handbooster data import dexycb|ho3d|handoccnet-json ROOT --split NAME") == []
