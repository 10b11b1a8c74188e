"""Security checks of a running cluster's machines (``kubeprem verify --security``).

The CIS-style items kubeprem owns, as data (``checks.CHECKS``), a fact
gatherer that asks each host once (``facts.gather``, a constant script), and
a pure evaluator (``evaluate``) over those facts. The verify workflow gathers,
evaluates and hands the ``CheckResult`` values to the CLI, which prints them
as a table or JSON (``to_dict``) and exits 1 when any ``failed``.
"""

from kubeprem.security.checks import CHECKS, Check, CheckResult
from kubeprem.security.evaluate import evaluate
from kubeprem.security.facts import SecurityFacts, command, gather, parse, wanted

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "SecurityFacts",
    "command",
    "evaluate",
    "gather",
    "parse",
    "wanted",
]
