"""CLI defaults cannot drift from the settings dataclasses (and library functions) they fill.

The CLI keeps its options hand-written (importing the dataclasses would load torch at
``--help`` time); each command lists in ``OPTION_TABLES`` which option sets which field
(:class:`facevid2vid.cli._common.OptionTable`). For every table: each option exists, each
name it maps to exists, the option's default equals the field's (an option left at None must
state the field's default in its help; any "default X" a help states must be the field's), and
every field of a dataclass has an option or is listed as set elsewhere or not on the CLI.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re

import pytest

from facevid2vid.cli import COMMANDS, build_parser
from facevid2vid.cli._common import OptionTable

REQUIRED = object()  # a field or parameter without a default
_STATED = re.compile(r"\bdefault:? (-?[\w./]+(?:,-?[\w.]+)*)")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def _target_defaults(target) -> dict[str, object]:
    if dataclasses.is_dataclass(target):
        out = {}
        for f in dataclasses.fields(target):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            else:
                out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else REQUIRED
        return out
    return {name: REQUIRED if p.default is inspect.Parameter.empty else p.default
            for name, p in inspect.signature(target).parameters.items()}


def _same(stated: str, value) -> bool:
    """Whether the text of a help's "default X" says ``value``."""
    if isinstance(value, (tuple, list)):
        parts = stated.split(",")
        return len(parts) == len(value) and all(_same(p, v) for p, v in zip(parts, value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(stated) == float(value)
        except ValueError:
            return False
    return str(value) in stated or stated in str(value)


def _default_problem(dest: str, action: argparse.Action, expected, overrides: bool) -> str | None:
    """Why the option ``dest`` disagrees with the default ``expected`` of what it sets, or None."""
    dest = action.option_strings[0].removeprefix("--")
    if overrides:
        return None if action.default is None else f"--{dest}: an override must default to None"
    stated = _STATED.search(action.help or "")
    if stated and expected is not None and not _same(stated.group(1), expected):
        return f"--{dest}: help says default {stated.group(1)!r}, the field's is {expected!r}"
    if action.default is None:
        if expected is None or stated:
            return None
        return f"--{dest}: defaults to None (the field's default) but its help does not say {expected!r}"
    if action.default != expected:
        return f"--{dest}: default {action.default!r}, the field's is {expected!r}"
    return None


def _completeness(table: OptionTable, defaults: dict, options: dict) -> list[str]:
    """Every field of a dataclass has an option, or is set elsewhere, or is deliberately not on the CLI."""
    covered = set(table.options.values()) | set(table.elsewhere) | set(table.not_on_cli)
    problems = [f"field {name} has no option (add one, or list it in elsewhere/not_on_cli)"
                for name in defaults if name not in covered]
    problems += [f"{name} is listed but is no field" for name in covered if name not in defaults]
    problems += [f"{name} is set elsewhere by --{dest}, which does not exist"
                 for name, dest in table.elsewhere.items() if dest not in options]
    return problems


def table_problems(parser: argparse.ArgumentParser, table: OptionTable) -> list[str]:
    """Everything in which a command's options and ``table``'s target disagree (empty: none)."""
    target = table.resolve()
    defaults, options = _target_defaults(target), _options(parser)
    problems = []
    for dest, name in table.options.items():
        if dest not in options:
            problems.append(f"--{dest} is in the table but not an option of the command")
        elif name not in defaults:
            problems.append(f"--{dest} sets {name}, which {table.target} does not have")
        elif (problem := _default_problem(dest, options[dest], defaults[name], table.overrides)) is not None:
            problems.append(problem)
    if dataclasses.is_dataclass(target) and not table.overrides:
        problems += _completeness(table, defaults, options)
    return [f"{table.target}: {p}" for p in problems]


def _tables() -> list[tuple[str, OptionTable]]:
    found = []
    for command in COMMANDS:
        module = importlib.import_module(f"facevid2vid.cli.{command}")
        found += [(command, table) for table in getattr(module, "OPTION_TABLES", ())]
    return found


@pytest.fixture(scope="module")
def commands() -> dict[str, argparse.ArgumentParser]:
    return _subparsers(build_parser())


@pytest.mark.parametrize("command, table", _tables(), ids=lambda v: v if isinstance(v, str) else v.target)
def test_options_match_the_fields_they_set(commands, command, table):
    assert table_problems(commands[command], table) == []


def test_the_settings_of_each_command_have_tables():
    tables = {(command, table.target) for command, table in _tables()}
    for command, target in [("encode", "facevid2vid.codec.encoder:EncoderSettings"),
                            ("encode", "facevid2vid.smoothing:SmoothingSettings"),
                            ("animate", "facevid2vid.smoothing:SmoothingSettings"),
                            ("reconstruct", "facevid2vid.smoothing:SmoothingSettings"),
                            ("prepare", "facevid2vid.data.prepare:PrepareOptions"),
                            ("evaluate", "facevid2vid.metrics.evaluate:EvaluateOptions"),
                            ("benchmark", "facevid2vid.metrics.evaluate:EvaluateOptions"),
                            ("benchmark", "facevid2vid.metrics.benchmark:JitterOptions"),
                            ("benchmark", "facevid2vid.smoothing:SmoothingSettings"),
                            ("train", "facevid2vid.config:TrainConfig")]:
        assert (command, target) in tables


def test_a_default_changed_on_one_side_is_caught():
    """The checker itself: a parser whose default drifted from the dataclass's is reported."""
    table = OptionTable("facevid2vid.smoothing:SmoothingSettings",
                        {"smooth": "enabled", "smooth_min_cutoff": "min_cutoff", "smooth_beta": "beta"},
                        not_on_cli=frozenset({"d_cutoff"}))
    p = argparse.ArgumentParser()
    p.add_argument("--smooth", action="store_true")
    p.add_argument("--smooth-min-cutoff", type=float, default=0.7)
    p.add_argument("--smooth-beta", type=float, default=None, help="speed coefficient (default 16)")
    problems = table_problems(p, table)
    assert any("--smooth-min-cutoff: default 0.7" in m for m in problems)
    assert any("help says default '16'" in m for m in problems)
    missing = OptionTable(table.target, {"smooth": "enabled"})
    assert any("field min_cutoff has no option" in m for m in table_problems(p, missing))


def test_choices_and_bounds_follow_the_library(commands):
    from facevid2vid.codec.bitstream import MAX_SIZE
    from facevid2vid.codec.keyframe import CODEC_IDS

    codec = _options(commands["encode"])["keyframe_codec"]
    assert set(codec.choices) == set(CODEC_IDS)
    size = _options(commands["decode"])["size"]
    assert size.default is None and size.type("16") == 16 and size.type(str(MAX_SIZE)) == MAX_SIZE
    for bad in ("15", str(MAX_SIZE + 1), "0", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            size.type(bad)
