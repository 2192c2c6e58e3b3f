"""Every link inside the repository's markdown leads somewhere, and the documentation site
builds strictly.

A relative link or image (``[x](path#anchor)``, ``![x](path)``, ``[x]: path``) must name a
file inside the repository, and its anchor, if any, a heading of the target as GitHub
slugs it (the site uses the same slugs: mkdocs.yml). Absolute ``http(s)://`` links are not
fetched: there is no network here. The reference pages' API anchors
(``client.md#rnnlm.client.LMClient.train``) are made by mkdocstrings from their ``::: name``
lines; the strict build checks each one exactly."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Folders whose markdown is not ours, or is generated (hidden folders are skipped too).
SKIPPED = {"site", "node_modules", "build", "dist", "__pycache__"}

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).*?\1")
# [text](target "title") and ![alt](target): the target up to whitespace or ")".
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
HTML_SOURCE = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=[\"']([^\"']+)[\"']", re.I)
API_DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The repository's markdown files, outside hidden folders (.git, .venv, caches) and
    build output."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in SKIPPED]
        found += [Path(folder, name) for name in files if name.endswith(".md")]
    return sorted(found)


def prose_lines(text: str, *, code_spans: bool = False) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks; inline code spans removed unless
    ``code_spans`` (a heading's anchor keeps their text)."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line if code_spans else CODE_SPAN.sub("", line)))
    return lines


def links(path: Path) -> list[Link]:
    """Every link and image of a markdown file, in order."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        targets = INLINE.findall(line) + HTML_SOURCE.findall(line)
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
        found += [Link(path, number, t) for t in targets if t]
    return found


def github_slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: markup dropped, lower case, punctuation but
    ``-`` and ``_`` removed, each space a ``-`` (so ``a / b`` is ``a--b``)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors a markdown file has: its headings' slugs (repeats numbered as GitHub
    numbers them), explicit ``<a id=...>``, and the API names of ``::: name`` lines."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(path.read_text(encoding="utf-8"), code_spans=True):
        found.update(HTML_ANCHOR.findall(line))
        if api := API_DIRECTIVE.match(line):
            found.add(api.group(1))
        if heading := HEADING.match(line):
            slug = github_slug(heading.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def has_anchor(path: Path, anchor: str) -> bool:
    names = anchors(path)
    # A member of a documented API object: `::: rnnlm.client.LMClient` makes
    # `rnnlm.client.LMClient.train` too (the strict build checks which members exist).
    return anchor in names or any(anchor.startswith(n + ".") for n in names if "." in n)


def broken(link: Link, root: Path = ROOT) -> str | None:
    """Why ``link`` is broken, or None when it leads somewhere."""
    if SCHEME.match(link.target) or link.target.startswith("//"):
        return None  # absolute: not fetched
    raw_path, _, anchor = link.target.partition("#")
    path = urllib.parse.unquote(raw_path)
    if path.startswith("/"):
        return "an absolute path: use one relative to this file"
    target = (link.source.parent / path).resolve() if path else link.source
    if not target.is_relative_to(root.resolve()):
        return "outside the repository"
    if not target.exists():
        return "no such file"
    if anchor and target.suffix == ".md" and not has_anchor(target, anchor):
        return f"no heading with the anchor #{anchor} in {target.relative_to(root.resolve())}"
    return None


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    """``file:line: target: why`` for each broken link of ``files``."""
    problems = []
    for link in (link for f in files for link in links(f)):
        if why := broken(link, root):
            where = link.source.resolve().relative_to(root.resolve()).as_posix()
            problems.append(f"{where}:{link.line}: {link.target}: {why}")
    return problems


# -- the repository -------------------------------------------------------------------------


def test_the_markdown_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/index.md", "docs/tasks/train.md"} <= names
    assert not [n for n in names if n.startswith((".", "site/"))]


def test_every_link_in_the_repository_leads_somewhere():
    files = markdown_files()
    assert sum(len(links(f)) for f in files) > 50  # the parser finds the links at all
    assert broken_links(files) == []


# -- the checker can fail -------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# A page\n\n## Options (`a` / `b`)\n\n## Twice\n\n## Twice\n\n::: rnnlm.client.LMClient\n"
    )
    (tmp_path / "docs" / "pic.png").write_bytes(b"\x89PNG")
    return tmp_path


def check(tree: Path, text: str) -> list[str]:
    page = tree / "docs" / "new.md"
    page.write_text(text)
    return broken_links([page], tree)


@pytest.mark.parametrize(
    "text",
    [
        "[ok](page.md) [ok](page.md#a-page) [ok](page.md#options-a--b) [ok](page.md#twice-1)",
        "![picture](pic.png) <img src='pic.png'> [same page](#here)\n\n## Here",
        "[api](page.md#rnnlm.client.LMClient.train) [web](https://example.org/x.md)",
        "```\n[in a code block](missing.md)\n```\nand `[in code](missing.md)`",
        "[ref]: page.md#twice",
    ],
)
def test_good_links_pass(tree: Path, text: str):
    assert check(tree, text) == []


@pytest.mark.parametrize(
    "text,why",
    [
        ("see [the design](missing.md)", "no such file"),
        ("![plot](images/curves.png)", "no such file"),
        ("[x](page.md#no-such-heading)", "no heading with the anchor #no-such-heading"),
        ("[x](page.md#options-a-b)", "no heading"),  # mkdocs' old slug, not GitHub's
        ("[x](#nowhere)", "no heading"),
        ("[design](../../shared/DESIGN.md)", "outside the repository"),
        ("[x](/docs/page.md)", "an absolute path"),
        ("[ref]: missing.md", "no such file"),
        ("[x](page.md#twice-2)", "no heading"),
    ],
)
def test_a_broken_link_is_reported(tree: Path, text: str, why: str):
    problems = check(tree, text)
    assert len(problems) == 1, problems
    assert why in problems[0]
    assert problems[0].startswith("docs/new.md:1: ")


# -- the documentation site -----------------------------------------------------------------


def test_the_documentation_builds_strictly(tmp_path: Path):
    """mkdocs.yml, built as CI builds it (scripts/docs.py): a broken link or anchor, an
    API name mkdocstrings cannot find or a docstring it warns about fails the build."""
    missing = [
        name for name in ("mkdocs", "mkdocstrings") if importlib.util.find_spec(name) is None
    ]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: pip install -e '.[server,docs]'")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "docs.py"), "--site-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cli = (tmp_path / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "rnnlm train" in cli and "--hidden-size" in cli  # the generated command reference
    client = (tmp_path / "reference" / "client" / "index.html").read_text(encoding="utf-8")
    assert 'id="rnnlm.client.LMClient.train"' in client  # the docstrings were found
