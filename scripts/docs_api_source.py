"""Let mkdocstrings find the rnnlm packages: an mkdocs hook (``hooks:`` in mkdocs.yml).

The packages live in top-level folders (client/, model/, ...) mapped onto one namespace by
setuptools' ``package-dir``, so there is no ``rnnlm/`` folder for griffe, which reads the
source without importing it, to search. At the start of a build this hook lays out one in a
temporary directory: ``rnnlm/<name>`` links to each package's folder, found through the
import system (an editable or a normal install alike), and the directory goes first on the
python handler's ``paths``. The links are removed when the build or ``mkdocs serve`` ends.

``SphinxRoles`` (a griffe extension, ``extensions:`` of the python handler) shows the
docstrings' Sphinx roles, ``:class:`X` ``, as the code span `` `X` `` they stand for.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path
from typing import Any

import griffe
from mkdocs.plugins import event_priority

# The packages the reference pages document.
PACKAGES = ("client", "model")

_staged: list[Path] = []


def package_folder(name: str) -> Path:
    """Where ``rnnlm.<name>`` is installed (its folder, not imported)."""
    spec = importlib.util.find_spec(f"rnnlm.{name}")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"rnnlm.{name} is not installed: pip install -e '.[server,docs]'")
    return Path(next(iter(spec.submodule_search_locations)))


def stage() -> Path:
    """A temporary directory holding ``rnnlm/<name>`` links to the packages' folders."""
    root = Path(tempfile.mkdtemp(prefix="rnnlm-docs-src-"))
    (root / "rnnlm").mkdir()
    for name in PACKAGES:
        (root / "rnnlm" / name).symlink_to(package_folder(name), target_is_directory=True)
    _staged.append(root)
    return root


def on_startup(command: str, dirty: bool) -> None:
    """Defined so that mkdocs keeps this hook across the rebuilds of ``mkdocs serve``: one
    staged directory serves them all, and ``on_shutdown`` sees it."""


@event_priority(100)  # before mkdocstrings starts its handlers
def on_config(config: Any) -> Any:
    handlers = config.plugins["mkdocstrings"].config["handlers"]
    python = handlers.setdefault("python", {})
    staged = _staged[0] if _staged else stage()
    python["paths"] = [str(staged), *python.get("paths", [])]
    return config


def on_shutdown() -> None:
    """Remove the links (never what they point to), then the directories."""
    while _staged:
        root = _staged.pop()
        for link in (root / "rnnlm").iterdir():
            link.unlink()
        (root / "rnnlm").rmdir()
        root.rmdir()


_ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """``:meth:`score` `` in a docstring reads as `` `score` ``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
