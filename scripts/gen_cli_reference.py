"""Write docs/cli-reference.md from the click commands' own --help (``--check``: exit 1 if the
committed page differs from what the commands say now). tests/test_docs.py runs the check, so
the reference cannot go stale.

    .venv/bin/python scripts/gen_cli_reference.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli-reference.md"
WIDTH = 100


def render() -> str:
    from basisnet_deploy.cli import cli

    parts = ["# CLI reference", "",
             "Generated from each command's `--help` by `scripts/gen_cli_reference.py`; "
             "do not edit by hand. The overview is [cli.md](cli.md).", ""]
    root = click.Context(cli, info_name="basisnet-deploy", terminal_width=WIDTH, max_content_width=WIDTH)
    for name in [None, *sorted(cli.commands)]:
        command = cli if name is None else cli.commands[name]
        ctx = root if name is None else click.Context(command, info_name=name, parent=root,
                                                      terminal_width=WIDTH, max_content_width=WIDTH)
        parts += [f"## {'basisnet-deploy' if name is None else f'basisnet-deploy {name}'}", "",
                  "```text", command.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    from _generated_page import write_or_check  # scripts/, beside this file

    return write_or_check(PAGE, render(), argv, "scripts/gen_cli_reference.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
