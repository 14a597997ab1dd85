"""One matching function for config targets: exact module path, suffix, or `re:` regex."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import ConfigError


def check_pattern(pattern: str, key: str) -> None:
    """Raise ConfigError if `pattern` (found at YAML `key`) is not a valid target pattern."""
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{key}: a target pattern must be a non-empty string, got {pattern!r}")
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as err:
            raise ConfigError(f"{key}: invalid regex {pattern[3:]!r}: {err}") from None


def matches(path: str, pattern: str) -> bool:
    """Whether module path `path` is targeted by `pattern`.

    Args:
        path: dotted module path, e.g. ``roberta.encoder.layer.0.attention.self.query``.
        pattern: ``re:<regex>`` (full match of the path), or a dotted name that stands in
            the path as whole components: the exact path, a suffix (``attention.self.query``),
            or a module and everything under it (``classifier`` covers ``classifier.dense``).

    Returns:
        True if the pattern covers the path.
    """
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], path) is not None
    return ("." + pattern + ".") in ("." + path + ".")


def first_match(path: str, patterns: Iterable[str]) -> str | None:
    """The first of `patterns` that covers `path`, or None."""
    for pattern in patterns:
        if matches(path, pattern):
            return pattern
    return None
