"""The option rules: what passes, and the one line naming the option and what is allowed."""

import math

import pytest

from optopass.tools.checks import check_counts, check_values, integer, number, one_of
from optopass.tools.errors import ConfigError

RULES = {
    "steps": integer(1),
    "samples": integer(1, optional=True),
    "seed": integer(0),
    "rate": number(above=0),
    "ratio": number(at_least=0, below=1),
    "decay": number(at_least=0),
    "mode": one_of(("frozen", "auto")),
}


@pytest.mark.parametrize(("name", "good", "bad", "message"), [
    ("steps", 1, 0, "steps: must be an integer >= 1, got 0"),
    ("steps", 7, True, "steps: must be an integer >= 1, got True"),
    ("samples", None, 1.5, "samples: must be an integer >= 1, or unset, got 1.5"),
    ("seed", 0, -1, "seed: must be an integer >= 0, got -1"),
    ("rate", 1e-5, 0.0, "rate: must be a number > 0, got 0.0"),
    ("rate", 3, math.nan, "rate: must be a number > 0, got nan"),
    ("ratio", 0.0, 1.0, r"ratio: must be a number in [0, 1), got 1.0"),
    ("decay", 0, -0.1, "decay: must be a number >= 0, got -0.1"),
    ("mode", "auto", "observe", "mode: must be one of frozen, auto, got 'observe'"),
])
def test_a_rule_passes_its_values_and_names_what_is_allowed(name, good, bad, message):
    check_values({name: good}, RULES)
    with pytest.raises(ConfigError) as info:
        check_values({name: bad}, RULES)
    assert str(info.value) == message


def test_flags_unset_values_and_counts():
    with pytest.raises(ConfigError, match="^--max-steps: must be an integer >= 1, got 0$"):
        check_values({"max_steps": 0}, {"max_steps": integer(1)}, as_flags=True)
    check_values({"max_steps": None}, {"max_steps": integer(1)}, unset_passes=True)
    check_values({"unruled": -5}, RULES)
    check_counts(batch_size=4, limit=None)
    with pytest.raises(ConfigError, match="^--batch-size: must be an integer >= 1, got 0$"):
        check_counts(as_flags=True, batch_size=0)
