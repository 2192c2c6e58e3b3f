"""The command-line reference, generated from the ``rnnlm`` parser itself so that it cannot
drift from the code: every command's ``--help`` text, as argparse prints it.

An mkdocs hook (``hooks:`` in mkdocs.yml): ``on_page_markdown`` replaces the marker line in
docs/reference/cli.md with a table of the commands and one section per command. Run alone,
``python scripts/docs_cli_reference.py`` prints the generated markdown.

``rnnlm serve`` hands its arguments to the server, so its section is the server's own parser
(``rnnlm.server.config.build_parser``); building the docs therefore needs the server extra,
as the dev install has.
"""

from __future__ import annotations

import argparse
import functools
import textwrap
from typing import Any

from rnnlm.client import cli
from rnnlm.client.cli import build_parser

MARKER = "<!-- generated: the rnnlm command reference -->"
PAGE = "reference/cli.md"
WIDTH = 100  # fixed, so the text does not depend on the terminal that builds the docs


def _fixed_width(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    make: Any = parser.formatter_class  # a HelpFormatter class (its declared type omits width)
    parser.formatter_class = functools.partial(make, width=WIDTH)
    if hasattr(parser, "color"):  # Python 3.14+ may colour help on a terminal
        parser.color = False
    return parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name, in the order they were added (aliases left out)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if all(sub is not seen for seen in found.values()):
                    found[name] = sub
    return found


def serve_parser() -> argparse.ArgumentParser:
    """The server's parser, with the defaults from code, none from this environment. A
    default that its help already explains in words (a per-host server id) is not printed,
    so the page does not depend on the machine that built it."""
    from rnnlm.server.config import build_parser as build_server_parser

    parser = build_server_parser({})
    for action in parser._actions:
        if action.help and "(default:" in action.help:
            action.default = argparse.SUPPRESS
    return parser


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _docstring_markdown(doc: str) -> list[str]:
    """A module docstring as markdown: indented paragraphs (examples) as shell blocks, the
    rest as text."""
    lines: list[str] = []
    for paragraph in textwrap.dedent(doc).strip().split("\n\n"):
        rows = paragraph.splitlines()
        if all(row.startswith("    ") for row in rows):
            lines += ["```bash", textwrap.dedent(paragraph), "```", ""]
        else:
            lines += [" ".join(row.strip() for row in rows), ""]
    return lines


def render() -> str:
    """The reference as markdown: the CLI module's docstring (examples, exit codes), a table
    of the commands, then each one's help."""
    top = _fixed_width(build_parser())
    subs = commands(top)
    summaries = {name: sub.description or "" for name, sub in subs.items()}
    if "serve" in subs:
        subs["serve"] = serve_parser()
    lines = _docstring_markdown(cli.__doc__ or "")
    lines += ["| command | what it does |", "|---|---|"]
    for name, text in summaries.items():
        anchor = "rnnlm-" + name.lower()
        lines.append(f"| [`rnnlm {name}`](#{anchor}) | {_escape_cell(text)} |")
    lines += ["", "## rnnlm", "", "```text", top.format_help().rstrip(), "```"]
    for name, sub in subs.items():
        help_text = _fixed_width(sub).format_help().rstrip()
        lines += ["", f"## rnnlm {name}", "", "```text", help_text, "```"]
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """mkdocs hook: fill in the reference page; every other page passes through."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its marker line {MARKER!r}")
    return markdown.replace(MARKER, render())


if __name__ == "__main__":
    print(render(), end="")
