"""Every command, option and positional of the CLI has help text.

Walks the parser that `kubeprem` runs (kubeprem.cli.main.build_parser), every
subcommand at every depth. argparse's own -h/--help is left out, and so is an
argument hidden on purpose with help=argparse.SUPPRESS.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from kubeprem.cli.main import build_parser


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        return "/".join(action.option_strings)
    return str(action.metavar or action.dest)


def _missing(parser: argparse.ArgumentParser, command: str) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            listed = {c.dest: c.help for c in action._choices_actions}
            for name, child in action.choices.items():
                path = f"{command} {name}"
                if not (listed.get(name) or "").strip():
                    yield f"{path}: the command itself (in `{command} --help`)"
                yield from _missing(child, path)
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if not (action.help or "").strip():
            yield f"{command}: {_name(action)}"


def test_every_option_and_positional_has_help() -> None:
    missing = list(_missing(build_parser(), "kubeprem"))
    assert missing == [], "no help text:\n" + "\n".join(missing)
