"""Imports the built-in technologies so that they register themselves."""

from . import kinds  # noqa: F401
from . import optical_transformer  # noqa: F401

try:  # SqueezeLight is an optional second technology; its module registers itself
    from . import squeezelight_sites  # noqa: F401
except ImportError:  # pragma: no cover - only while it is being written
    pass
