"""The state dimensions of a CDR in clearing (clearing notes §4 item 8; ADR 0204), never collapsed into one field.

* delivery: ``received`` (through the hub's store) or ``imported`` (from a file); routing's ``forwarded`` and
  ``acknowledged`` come later;
* validation: ``pending`` → ``ok`` | ``warning`` | ``error`` (the worst finding; information alone is ok);
* pricing: ``pending`` → ``matched`` | ``within_tolerance`` | ``mismatch`` | ``unpriceable``;
* commercial: ``pending`` → ``approved`` | ``declined`` → ``credited`` | ``written_off`` (OCHP semantics on OCPI);
* settlement: ``unsettled`` (periods and statements come later).

Validation and pricing follow from the checks (a re-check may move them either way). Commercial moves only along
`COMMERCIAL_TRANSITIONS`; ``credited`` and ``written_off`` are final.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "COMMERCIAL_TRANSITIONS",
    "STATES",
    "Dimension",
    "StateError",
    "check_commercial_transition",
]


class Dimension(StrEnum):
    DELIVERY = "delivery"
    VALIDATION = "validation"
    PRICING = "pricing"
    COMMERCIAL = "commercial"
    SETTLEMENT = "settlement"


STATES: Final[dict[Dimension, tuple[str, ...]]] = {
    Dimension.DELIVERY: ("received", "imported", "forwarded", "acknowledged"),
    Dimension.VALIDATION: ("pending", "ok", "warning", "error"),
    Dimension.PRICING: ("pending", "matched", "within_tolerance", "mismatch", "unpriceable"),
    Dimension.COMMERCIAL: ("pending", "approved", "declined", "credited", "written_off"),
    Dimension.SETTLEMENT: ("unsettled", "in_draft", "settled"),
}

COMMERCIAL_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    # A CPO may credit a CDR before the eMSP has looked at it.
    "pending": frozenset({"approved", "declined", "credited"}),
    "approved": frozenset({"credited"}),
    # A declined CDR is credited (and re-issued), written off (OCHP "rejected": the claim is given up), or approved
    # after all.
    "declined": frozenset({"approved", "credited", "written_off"}),
    "credited": frozenset(),
    "written_off": frozenset(),
}


class StateError(ValueError):
    """A state change that the dimension does not allow; the message says which moves are possible."""


def check_commercial_transition(current: str, target: str) -> None:
    allowed = COMMERCIAL_TRANSITIONS.get(current)
    if allowed is None or target not in STATES[Dimension.COMMERCIAL]:
        raise StateError(f"unknown commercial state {target if allowed is not None else current!r}")
    if target not in allowed:
        possible = ", ".join(sorted(allowed)) or "none: the state is final"
        raise StateError(f"a {current} CDR cannot become {target} (possible: {possible})")
