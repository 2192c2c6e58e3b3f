"""Refusing bad arguments: every ``ValueError`` names the value, says what is allowed and
shows what was given, so that the service can hand the message straight to a user."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def quote(value: Any, limit: int = 40) -> str:
    """A user's value as a message shows it: at most ``limit`` characters of its repr."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Rule:
    """What a value must be, in words for the message and as a test."""

    allowed: str  # completes "<name> must be ...": "an integer >= 1"
    test: Callable[[Any], bool]

    def check(self, name: str, value: Any) -> Any:
        """``value`` when it passes, else ValueError: "<name> must be <allowed>, got <value>"."""
        if not self.test(value):
            raise ValueError(f"{name} must be {self.allowed}, got {quote(value)}")
        return value

    def passing(self, *values: Any) -> Rule:
        """The same rule, except that ``values`` (None for a default, 0 for off) pass too."""
        return Rule(self.allowed, lambda v: v in values or self.test(v))

    def noting(self, note: str) -> Rule:
        return Rule(f"{self.allowed} ({note})", self.test)


def integer(minimum: int, maximum: float = math.inf) -> Rule:
    bounds = f">= {minimum}" if maximum == math.inf else f"in [{minimum}, {maximum}]"
    return Rule(f"an integer {bounds}", lambda v: _is_int(v) and minimum <= v <= maximum)


def number(interval: str) -> Rule:
    """A finite number in ``interval``, written as in mathematics: "[0.0, 1.0)", "(0, inf)"."""
    low, high = (float(end) for end in interval[1:-1].split(","))

    def test(v: Any) -> bool:
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            return False
        above = v > low if interval[0] == "(" else v >= low
        below = v < high if interval[-1] == ")" else v <= high
        return above and below

    return Rule(f"a number in {interval}", test)


def one_of(choices: Collection[Any]) -> Rule:
    return Rule("one of " + ", ".join(repr(c) for c in choices), lambda v: v in choices)


BOOLEAN = Rule("true or false", lambda v: isinstance(v, bool))


def check_fields(obj: Any, rules: Mapping[str, Rule], prefix: str) -> None:
    """Check the fields of ``obj`` that ``rules`` names; messages call them prefix + name."""
    for name, rule in rules.items():
        rule.check(prefix + name, getattr(obj, name))


def refuse_unknown(owner: str, noun: str, given: Iterable[str], allowed: list[str]) -> None:
    """ValueError naming the keys of ``given`` that are not ``allowed``."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"{owner}: unknown {noun}(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )


def read_file(path: str | Path, what: str) -> bytes:
    """A file's bytes, or ValueError saying that ``what`` ("corpus") is missing or a folder."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{what} file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{what} path {str(path)!r} is a directory, not a file") from None
