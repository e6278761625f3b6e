"""The rule machinery: a rule is a small function with a code, a severity, a title and the catalogue entry it
implements (clearing notes §1.6); it yields `Issue`s (a message and a JSON pointer), which become `Finding`s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

import msgspec

from clearing.document import escape_pointer, number
from clearing.facts import Facts, StoreFacts
from clearing.pricing import PRICE_FIELDS

__all__ = [
    "RULES",
    "Finding",
    "Issue",
    "Rule",
    "Severity",
    "dimensions",
    "need_store",
    "pointer",
    "price_fields",
    "rule",
    "run_rules",
    "validation_state",
]


class Severity(StrEnum):
    """E = reject or hold, W = warn and continue, I = information (clearing notes §1.6)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one rule for one CDR: what is wrong and where (RFC 6901 pointer into the CDR)."""

    code: str
    severity: str
    message: str
    pointer: str


@dataclass(frozen=True, slots=True)
class Issue:
    """What a rule's check yields; the rule adds its code and severity."""

    message: str
    pointer: str = ""


Check = Callable[[Facts], Iterable[Issue]]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: Severity
    title: str
    # The clearing notes §1.6 entry this rule implements (e.g. "TIME-ORDER").
    catalogue: str
    # Needs what matching found in the database; skipped in a pre-flight check without the store.
    needs_store: bool
    check: Check

    def run(self, facts: Facts) -> list[Finding]:
        if self.needs_store and facts.store is None:
            return []
        try:
            issues = list(self.check(facts))
        except Exception as exc:  # a rule's bug must not stop the intake of a whole batch
            message = f"the rule could not be evaluated: {type(exc).__name__}: {exc}"
            return [Finding(code=self.code, severity=Severity.WARNING, message=message, pointer="")]
        if not issues:  # most rules find nothing
            return []
        return [
            Finding(code=self.code, severity=self.severity, message=issue.message, pointer=issue.pointer)
            for issue in issues
        ]


#: Every rule, in code order once `clearing.rules` is imported.
RULES: list[Rule] = []


def rule(code: str, severity: Severity, title: str, *, catalogue: str, store: bool = False) -> Callable[[Check], Rule]:
    """Register a check function as a rule."""

    def register(check: Check) -> Rule:
        if any(existing.code == code for existing in RULES):
            raise ValueError(f"rule code {code} is used twice")
        registered = Rule(code, severity, title, catalogue, store, check)
        RULES.append(registered)
        RULES.sort(key=lambda item: item.code)
        return registered

    return register


def run_rules(facts: Facts, rules: Sequence[Rule] | None = None) -> list[Finding]:
    """Every finding of ``rules`` (default: all) for the CDR, in rule order."""
    global _last_dimensions  # noqa: PLW0603 - the cache lives for one call of run_rules only
    findings: list[Finding] = []
    _last_dimensions = (None, ())  # a document changed since the last call must not get a stale answer
    try:
        for item in RULES if rules is None else rules:
            found = item.run(facts)
            if found:
                findings.extend(found)
    finally:
        _last_dimensions = (None, ())
    return findings


_RANK: Final = {Severity.ERROR: 2, Severity.WARNING: 1, Severity.INFO: 0}


def validation_state(findings: Iterable[Finding]) -> str:
    """ "error", "warning" or "ok" (information alone is ok)."""
    worst = max((_RANK[Severity(finding.severity)] for finding in findings), default=0)
    return {2: "error", 1: "warning", 0: "ok"}[worst]


# --- helpers for the checks --------------------------------------------------------------------------------------


def pointer(*parts: str | int) -> str:
    return "".join(f"/{escape_pointer(part)}" for part in parts)


Dimension = tuple[int, int, str, Decimal]
# The last document `dimensions` read and its answer: six rules ask for the same CDR's dimensions one after another.
# Held as one tuple, so a reader sees a document with its own answer; the reference keeps the document alive, so
# an identity match cannot be a new document at a reused address. `run_rules` empties it before and after.
_last_dimensions: tuple[Mapping[str, Any] | None, tuple[Dimension, ...]] = (None, ())


def dimensions(doc: Mapping[str, Any]) -> Iterator[Dimension]:
    """(period index, dimension index, upper-case type, volume) of every numeric dimension of every period."""
    global _last_dimensions  # noqa: PLW0603 - a one-entry cache, see above
    last = _last_dimensions
    if last[0] is doc:
        return iter(last[1])
    found = tuple(_dimensions(doc))
    _last_dimensions = (doc, found)
    return iter(found)


def _dimensions(doc: Mapping[str, Any]) -> Iterator[Dimension]:
    periods = doc.get("charging_periods")
    if not isinstance(periods, list):
        return
    for period_index, period in enumerate(periods):
        if not isinstance(period, dict) or not isinstance(period.get("dimensions"), list):
            continue
        for dimension_index, dimension in enumerate(period["dimensions"]):
            if not isinstance(dimension, dict) or not isinstance(dimension.get("type"), str):
                continue
            volume = number(dimension.get("volume"))
            if volume is not None:
                yield period_index, dimension_index, dimension["type"].upper(), volume


def price_fields(doc: Mapping[str, Any]) -> Iterator[tuple[str, Decimal | None, Decimal | None]]:
    """(field, excl_vat, incl_vat) of every Price field the CDR carries; a missing or malformed part is None."""
    for name in PRICE_FIELDS:
        value = doc.get(name)
        if isinstance(value, dict):
            yield name, number(value.get("excl_vat")), number(value.get("incl_vat"))


def need_store(facts: Facts) -> StoreFacts:
    """The store facts of a rule registered with ``store=True`` (`Rule.run` skips it when they are absent)."""
    if facts.store is None:  # pragma: no cover - Rule.run never calls such a rule without them
        raise RuntimeError("this rule needs what matching found in the store")
    return facts.store
