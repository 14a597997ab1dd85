"""Range checks of options, shared by the command line and the Python API.

A rule is ``(test, what is allowed)``; :func:`check_values` applies a table of rules and raises
one :class:`~optopass.tools.errors.ConfigError` line naming the first value out of range, as a
Python option (``max_steps``) or as a flag (``--max-steps``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

from .errors import ConfigError

Rule = tuple[Callable[[Any], bool], str]


def is_int(value: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return is_number(value) and math.isfinite(value)


def integer(minimum: int = 1, *, optional: bool = False) -> Rule:
    """An integer >= `minimum` (and None, when `optional`)."""
    allowed = f"an integer >= {minimum}" + (", or unset" if optional else "")
    return _optional(lambda v: is_int(v) and v >= minimum, optional), allowed


def number(*, above: float | None = None, at_least: float | None = None, below: float | None = None,
           optional: bool = False) -> Rule:
    """A finite number within the given bounds (and None, when `optional`)."""

    def test(value) -> bool:
        return (is_finite_number(value)
                and (above is None or value > above) and (at_least is None or value >= at_least)
                and (below is None or value < below))

    if at_least is not None and below is not None:
        allowed = f"a number in [{at_least:g}, {below:g})"
    else:
        bounds = [f"{sign} {bound:g}" for sign, bound in ((">", above), (">=", at_least), ("<", below))
                  if bound is not None]
        allowed = " ".join(["a number", *bounds])
    return _optional(test, optional), allowed + (", or unset" if optional else "")


def one_of(choices: Collection[Any]) -> Rule:
    """One of `choices`."""
    return (lambda v: v in choices), "one of " + ", ".join(map(str, choices))


def _optional(test: Callable[[Any], bool], optional: bool) -> Callable[[Any], bool]:
    return (lambda v: v is None or test(v)) if optional else test


def option_name(name: str, as_flag: bool) -> str:
    """``max_steps`` as it is written: the name, or the flag ``--max-steps``."""
    return "--" + name.replace("_", "-") if as_flag else name


def check_values(values: Mapping[str, Any], rules: Mapping[str, Rule], *, as_flags: bool = False,
                 unset_passes: bool = False) -> None:
    """Checks each value that has a rule (values without one are not checked).

    Args:
        values: option name -> value.
        rules: option name -> ``(test, what is allowed)``.
        as_flags: name options as command-line flags in the message.
        unset_passes: None passes every rule (a command-line option left at its default).

    Raises:
        ConfigError: ``<option>: must be <allowed>, got <value>`` for the first failing value.
    """
    for name, value in values.items():
        rule = rules.get(name)
        if rule is not None and not (unset_passes and value is None) and not rule[0](value):
            raise ConfigError(f"{option_name(name, as_flags)}: must be {rule[1]}, got {value!r}")


def check_counts(*, as_flags: bool = False, **values: int | None) -> None:
    """Each count that is set (not None) must be an integer >= 1.

    Raises:
        ConfigError: ``<option>: must be an integer >= 1, got <value>``.
    """
    check_values(values, dict.fromkeys(values, integer(1)), as_flags=as_flags, unset_passes=True)
