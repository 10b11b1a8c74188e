"""Desired vs observed per host -> changes: the plan as a value.

``facts`` (a constant remote script and its pure parser), ``diff`` (pure:
``Rendered`` values and ``HostFacts`` -> ``Plan``), ``model`` (the change
types and ``Plan``), ``render`` (the plan for people). The executor that
carries a plan out lives in ``kubeprem.workflows.execute``.
"""

from kubeprem.plan.diff import diff, diff_host, wanted
from kubeprem.plan.facts import HostFacts, gather_all, gather_contents, gather_facts
from kubeprem.plan.model import Change, HostPlan, Noop, Plan

__all__ = [
    "Change",
    "HostFacts",
    "HostPlan",
    "Noop",
    "Plan",
    "diff",
    "diff_host",
    "gather_all",
    "gather_contents",
    "gather_facts",
    "wanted",
]
