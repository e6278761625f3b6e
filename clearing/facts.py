"""What the clearing house knows about one CDR when it validates and prices it: plain data, no I/O.

`Facts` is the input of every validation rule (`clearing.rules`) and of the price verification. The parts that
come from the database (`StoreFacts`) are None in a pre-flight check without the store, and the rules that need
them are then skipped rather than reported as missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from clearing.document import CdrKey, ParsedCdr
from clearing.pricing import Tariff

__all__ = ["Facts", "KnownCdr", "StoreFacts", "StoredObject", "TariffResolution", "TariffUse"]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A stored Session, Token or Location as matching found it."""

    row_id: int
    doc: Mapping[str, Any]
    last_updated: datetime | None = None


@dataclass(slots=True)
class KnownCdr:
    """Another CDR the clearing house already knows: a record, or an earlier CDR of the batch being taken in.

    ``credited`` turns true when a credit CDR for it is seen; ``doc`` is loaded only where a rule compares
    contents (the CDR a credit CDR credits).
    """

    key: CdrKey
    record_id: int | None
    credit: bool
    credited: bool
    session_id: str | None
    credit_reference_id: str | None
    token_uid: str | None
    evse_uid: str | None
    start: datetime | None
    total_energy: Decimal | None
    doc: Mapping[str, Any] | None = None

    @property
    def label(self) -> str:
        return "/".join(self.key)


#: Look-alikes named per CDR (rule CDR041); beyond them a CDR only says that there are more.
MAX_LOOK_ALIKES: Final = 5


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What matching found in the database for one CDR (ADR 0202)."""

    session: StoredObject | None = None
    token: StoredObject | None = None
    location: StoredObject | None = None
    # Other live (not credited) non-credit CDRs of the same CPO for the same session_id.
    same_session: tuple[KnownCdr, ...] = ()
    # CDRs under another id with the same token and EVSE, start within a minute and energy within 1 %: the first
    # MAX_LOOK_ALIKES in key order, and whether there are more (a CPO replaying one charge thousands of times under
    # new ids must not give every copy a finding per earlier copy: that grew with the square of the copies).
    look_alikes: tuple[KnownCdr, ...] = ()
    more_look_alikes: bool = False
    # For a credit CDR: the CDR it credits, and other credit CDRs of that same CDR.
    original: KnownCdr | None = None
    other_credits: tuple[KnownCdr, ...] = ()


@dataclass(frozen=True, slots=True)
class TariffUse:
    """One tariff the CDR references (or its connector names), and where the version used for pricing came from.

    ``source``: "store" (the version the hub held at session start), "cdr" (the CDR's own ``tariffs``), "location"
    (the connector's ``tariff_ids``, when the CDR references none), "given" (passed in, as the CLI's ``--tariff``)
    or "missing" (referenced but found nowhere). ``pointer`` is where the CDR references it.
    """

    tariff_id: str | None
    source: str
    pointer: str
    tariff: Tariff | None = None
    doc: Mapping[str, Any] | None = None
    # last_updated of the stored version used.
    version: datetime | None = None
    # The CDR carries its own copy of this tariff and it differs from the stored version (rule CDR082).
    embedded_differs: bool = False
    embedded_pointer: str | None = None


@dataclass(frozen=True, slots=True)
class TariffResolution:
    """The tariffs for pricing one CDR. ``source`` sums up the uses: one of their sources, "mixed" or "none"."""

    uses: tuple[TariffUse, ...] = ()
    source: str = "none"

    @property
    def tariffs(self) -> list[Tariff]:
        return [use.tariff for use in self.uses if use.tariff is not None]


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a validation rule may look at."""

    cdr: ParsedCdr
    now: datetime
    tolerance: Decimal
    tariffs: TariffResolution = field(default_factory=TariffResolution)
    store: StoreFacts | None = None

    @property
    def doc(self) -> Mapping[str, Any]:
        return self.cdr.doc
