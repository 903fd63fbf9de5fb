"""Click commands built from the two tables: the stages (``flows.stages``) and the read-only
queries (``flows.queries``).

A stage's command has a flag (or positional argument) per field of its inputs model and per
config key of its entry, with the field descriptions as help. It loads the config
(``--config``), applies the config flags as dotted keys through
:func:`pipeline.config.with_overrides` (a bad flag value gets the same error as a bad YAML
value) and calls the stage. :class:`TableGroup` builds a command when it is used, so listing
commands imports no stage.
"""

from __future__ import annotations

import ast
import json
import types
import typing
from pathlib import Path

import click

from flows.queries import QUERIES
from flows.stages import STAGES
from pipeline.errors import InputError

_json_stream = None  # where --json output goes: the real stdout, while the command's own goes to stderr (cli)


def emit(result, as_json: bool, text=None) -> None:
    """A result as JSON (to the saved real stdout) or as lines of text, once for a command that
    a launcher started in several processes (from the first)."""
    from pipeline.stage import launched_processes

    if launched_processes()[0] != 0:
        return
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True), file=_json_stream)
    else:
        for line in text(result) if text else (f"{key}: {value}" for key, value in result.items()):
            click.echo(line)


def configure(config_path, seed=None, flags: dict | None = None):
    """The config file with the flags applied: ``flags`` maps a dotted key to ``(flag, value)``."""
    from pipeline.config import load_config, with_overrides

    flags = {"seed": ("--seed", seed), **(flags or {})}
    return with_overrides(load_config(config_path), {key: value for key, (_, value) in flags.items()},
                          names={key: flag for key, (flag, _) in flags.items()})


def common_options() -> list[click.Option]:
    """--config, --seed and --json, shared by every command."""
    return [click.Option(["--config", "config_path"], type=click.Path(dir_okay=False), help="YAML config file."),
            click.Option(["--seed"], type=int, default=None, help="Random seed (overrides the config's)."),
            click.Option(["--json", "as_json"], is_flag=True, help="Print the result as JSON.")]


def field_type(annotation) -> tuple[typing.Any, bool]:
    """The click type of a field's annotation, and whether it is a comma-separated list."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    base = options[0] if len(options) == 1 else str
    if typing.get_origin(base) is typing.Annotated:  # a constrained type: its base decides
        base = typing.get_args(base)[0]
    if typing.get_origin(base) is typing.Literal:
        return click.Choice([str(v) for v in typing.get_args(base)]), False
    if typing.get_origin(base) in (list, tuple):
        return str, True
    return (base if base in (int, float, str, bool) else str), False


def _config_field(key: str):
    from pipeline.config import PipelineConfig

    model, field = PipelineConfig, None
    for part in key.split("."):
        field = model.model_fields[part]
        model = field.annotation
    return field


def _config_options(flags: dict) -> list[tuple[click.Option, str, object]]:
    """``(option, parameter, keys)`` for each config flag of an entry."""
    found = []
    for index, (flag, keys) in enumerate(flags.items()):
        if isinstance(keys, tuple):  # one flag, several keys: "A,B"
            help_text = f"{', '.join(keys)} as comma-separated values (default: config)"
            option = click.Option([flag, f"cfg{index}"], default=None, metavar=",".join("N" * len(keys)), help=help_text)
        else:
            field = _config_field(keys)
            kind, _ = field_type(field.annotation)
            help_text = f"{field.description or keys} (default: config {keys})"
            option = click.Option([flag, f"cfg{index}"], is_flag=True, default=None, help=help_text) \
                if kind is bool else click.Option([flag, f"cfg{index}"], type=kind, default=None, help=help_text)
        found.append((option, f"cfg{index}", keys))
    return found


def _model_parameters(model, arguments=(), defaults=None) -> list[tuple[click.Parameter, str, bool]]:
    """``(parameter, field, is_list)`` for each field of an inputs or query model."""
    found = []
    for name, field in model.model_fields.items():
        kind, is_list = field_type(field.annotation)
        positional = name in arguments or (field.json_schema_extra or {}).get("argument")
        if positional:
            parameter = click.Argument([f"in_{name}"], metavar=name.upper(), type=kind)
        else:
            default = (defaults or {}).get(name, None if field.is_required() else field.default)
            flag = "--" + name.replace("_", "-")
            help_text = (field.description or name) + (" (comma-separated)" if is_list else "")
            parameter = click.Option([flag, f"in_{name}"], is_flag=True, default=bool(default), help=help_text) \
                if kind is bool else click.Option([flag, f"in_{name}"], type=kind, required=field.is_required(),
                                                  default=default, show_default=default is not None, help=help_text)
        found.append((parameter, name, is_list))
    return found


def _config_values(options, values: dict) -> dict:
    flags = {}
    for option, parameter, keys in options:
        value = values.pop(parameter)
        if isinstance(keys, tuple) and value is not None:
            parts = value.split(",")
            if len(parts) != len(keys):
                raise InputError(f"{option.opts[0]}: expected {len(keys)} comma-separated values, got {value!r}")
            flags.update({key: (option.opts[0], part) for key, part in zip(keys, parts)})
        elif isinstance(keys, tuple):
            flags.update({key: (option.opts[0], None) for key in keys})
        else:
            flags[keys] = (option.opts[0], value)
    return flags


def _model_values(parameters, values: dict) -> dict:
    found = {}
    for _, name, is_list in parameters:
        value = values.pop(f"in_{name}")
        if value is not None:
            found[name] = listed(f"--{name.replace('_', '-')}", value) if is_list else value
    return found


def listed(flag: str, value: str) -> list[str]:
    """A list given on the command line as A,B; an empty one is an error: an empty variable in a
    script must not mean the default (all objects, say)."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise InputError(f"{flag}: expected comma-separated values, got {value!r}")
    return items


def stage_command(name: str) -> click.Command:
    from flows.stages import load_stage

    entry, stage = STAGES[name], load_stage(name)
    options = _config_options(entry.flags)
    inputs = _model_parameters(stage.inputs_model, entry.arguments, entry.defaults)
    out = click.Option([entry.out, "out"], required=entry.out_default is None, default=entry.out_default,
                       show_default=entry.out_default is not None, help=entry.out_help) \
        if entry.out.startswith("--") else click.Argument(["out"], metavar=entry.out.upper())

    def run(config_path, seed, as_json, **values) -> None:
        config = configure(config_path, seed, _config_values(options, values))
        emit(stage(config, _model_values(inputs, values), values.pop("out")), as_json)

    parameters = [p for p, *_ in inputs if isinstance(p, click.Argument)] + [out] + \
        [p for p, *_ in inputs if not isinstance(p, click.Argument)] + [o for o, *_ in options] + common_options()
    return click.Command(entry.command.split()[-1], callback=run, params=parameters, help=_first_paragraph(stage.__doc__))


def query_command(words: str) -> click.Command:
    entry = QUERIES[words]
    options = _config_options(entry.flags)
    parameters = _model_parameters(entry.model)

    def run(config_path, seed, as_json, **values) -> None:
        config = configure(config_path, seed, _config_values(options, values))
        query = entry.model(**_model_values(parameters, values))
        result = entry.function(config, query)
        emit(result, as_json, entry.text)
        problem = entry.problems(result) if entry.problems else None
        if problem:
            raise InputError(problem, getattr(query, "dataset", None))

    return click.Command(words.split()[-1], callback=run, help=entry.help,
                         params=[p for p, *_ in parameters] + [o for o, *_ in options] + common_options())


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _stage_doc(name: str) -> str:
    """A stage's help line read from its source, so that listing commands imports no stage."""
    module, _, function = STAGES[name].target.partition(":")
    path = Path(__file__).resolve().parent.parent / (module.replace(".", "/") + ".py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return _first_paragraph(ast.get_docstring(node))
    return ""


def _commands(prefix: str) -> dict[str, tuple[str, object]]:
    """The commands one word below ``prefix`` (``""``: the top level): name -> (help, builder)."""
    found = {}
    for name, entry in STAGES.items():
        if entry.command and entry.command.rpartition(" ")[0] == prefix:
            found[entry.command.split()[-1]] = (lambda n=name: _stage_doc(n), lambda n=name: stage_command(n))
    for words, entry in QUERIES.items():
        if words.rpartition(" ")[0] == prefix:
            found[words.split()[-1]] = (lambda e=entry: e.help, lambda w=words: query_command(w))
    return found


class TableGroup(click.Group):
    """A group whose stage and query commands are built from the tables when first used."""

    def __init__(self, *args, prefix: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.table = _commands(prefix)

    def list_commands(self, ctx) -> list[str]:
        return sorted([*self.table, *self.commands])

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.table:
            self.add_command(self.table[name][1](), name)
        return self.commands.get(name)

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, help_line()) for name, (help_line, _) in self.table.items() if name not in self.commands]
        rows += [(name, command.get_short_help_str(80)) for name, command in self.commands.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted((name, text.split(". ")[0]) for name, text in rows))


