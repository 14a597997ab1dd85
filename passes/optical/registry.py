"""Registries of the optical plugin.

Three maps, each filled by a decorator that returns what it decorates and refuses duplicates:

- ``KINDS``: a YAML layer-type key (``fc``, ``attn``) -> the rewrite handler for that kind;
- ``TECHNOLOGIES``: a technology name (``optical_transformer``, ``squeezelight``) -> its frozen
  parameter dataclass (validated in ``__post_init__``);
- ``SITES``: (technology, op) -> a factory that builds the module simulating that op, where op is
  one of ``linear``, ``matmul``, ``attention``.

A new optical technology is one ``register_technology`` plus one ``register_site`` per op it
supports; nothing in the core changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KINDS: dict[str, Callable[..., Any]] = {}
TECHNOLOGIES: dict[str, type] = {}
SITES: dict[tuple[str, str], Callable[..., Any]] = {}

DEFAULT_TECHNOLOGY = "optical_transformer"
SITE_OPS = ("linear", "matmul", "attention")


def _register(table: dict, key, what: str):
    def decorator(obj):
        if key in table:
            raise ValueError(f"{what} {key!r} is already registered (by {table[key]!r})")
        table[key] = obj
        return obj

    return decorator


def register_kind(kind: str):
    """Register the rewrite handler for YAML key `kind` (e.g. ``fc``)."""
    return _register(KINDS, kind, "kind")


def register_technology(name: str):
    """Register the parameter dataclass of optical technology `name`."""
    return _register(TECHNOLOGIES, name, "technology")


def register_site(technology: str, op: str):
    """Register the factory building `technology`'s simulation module for `op`.

    The factory is called as ``factory(params, name=..., match=...)`` and returns an
    ``nn.Module`` whose forward takes the matched operands, or None to decline.
    """
    if op not in SITE_OPS:
        raise ValueError(f"site op must be one of {SITE_OPS}, got {op!r}")
    return _register(SITES, (technology, op), "site")


def site_factory(technology: str, op: str) -> Callable[..., Any] | None:
    """The factory for (technology, op), or None when the technology does not simulate op."""
    return SITES.get((technology, op))
