"""What the optical rewrite matches: linear layers and attention (eager matmuls and SDPA)."""

from . import attention, linear
from .base import Match, Rule, match_node, origin_of

RULES = linear.RULES + attention.RULES

__all__ = ["RULES", "Match", "Rule", "match_node", "origin_of"]
