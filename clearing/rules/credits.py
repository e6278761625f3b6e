"""Rules on credit CDRs (mod_cdrs §10.1.1; clearing notes §1.6 CRD-LINK).

A credit CDR has ``credit: true`` and names the CDR it credits in ``credit_reference_id``; it "will contain all the
data of the original CDR", and "only the values in the total_cost field SHALL contain the negative amounts".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from clearing.document import ci_text, key_of, number, text, timestamp
from clearing.facts import Facts
from clearing.pricing import PRICE_FIELDS
from clearing.rules.base import Issue, Severity, need_store, rule


@rule("CDR090", Severity.ERROR, "credit CDR without credit_reference_id", catalogue="CRD-LINK")
def credit_has_reference(facts: Facts) -> Iterator[Issue]:
    if facts.cdr.credit and "credit_reference_id" not in facts.doc:
        yield Issue("a credit CDR must name the CDR it credits in credit_reference_id (mod_cdrs §10.3.1)",
                    "/credit_reference_id")  # fmt: skip


@rule("CDR091", Severity.ERROR, "credited CDR unknown", catalogue="CRD-LINK", store=True)
def credited_cdr_known(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    reference = key_of(facts.doc, "credit_reference_id")
    if not facts.cdr.credit or reference is None:
        return
    if reference == facts.cdr.key[2]:
        yield Issue("the credit CDR names itself in credit_reference_id", "/credit_reference_id")
    elif store.original is None:
        yield Issue(
            f"credit_reference_id {text(facts.doc, 'credit_reference_id')}: no such CDR of "
            f"{facts.cdr.key[0]}/{facts.cdr.key[1]} is known to the clearing house",
            "/credit_reference_id",
        )
    elif store.original.credit:
        yield Issue(f"credit_reference_id names {store.original.label}, itself a credit CDR", "/credit_reference_id")


def _original(facts: Facts) -> Mapping[str, Any] | None:
    store = need_store(facts)
    if not facts.cdr.credit or store.original is None or store.original.doc is None:
        return None
    return store.original.doc


def _amount(doc: Mapping[str, Any], name: str, basis: str) -> Decimal | None:
    value = doc.get(name)
    return number(value.get(basis)) if isinstance(value, dict) else None


@rule("CDR092", Severity.ERROR, "credit total_cost is not the negation of the original", catalogue="CRD-LINK",
      store=True)  # fmt: skip
def credit_negates_total(facts: Facts) -> Iterator[Issue]:
    original = _original(facts)
    if original is None:
        return
    for basis in ("excl_vat", "incl_vat"):
        credited, stated = _amount(original, "total_cost", basis), _amount(facts.doc, "total_cost", basis)
        if credited is None and stated is None:
            continue
        if credited is None or stated is None or stated != -credited:
            yield Issue(
                f"total_cost.{basis} is {stated} but the credited CDR's is {credited}; a credit CDR holds its "
                "negation (mod_cdrs §10.1.1)",
                f"/total_cost/{basis}",
            )


@rule("CDR093", Severity.ERROR, "more than one credit CDR for one CDR", catalogue="CRD-LINK", store=True)
def single_credit(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    if facts.cdr.credit and store.other_credits:
        others = ", ".join(other.key[2] for other in store.other_credits)
        yield Issue(f"CDR {text(facts.doc, 'credit_reference_id')} was already credited by {others}",
                    "/credit_reference_id")  # fmt: skip


@rule("CDR094", Severity.ERROR, "credit CDR for another session or party", catalogue="CRD-LINK", store=True)
def credit_same_session(facts: Facts) -> Iterator[Issue]:
    original = _original(facts)
    if original is None:
        return
    for path in (
        ("session_id",),
        ("cdr_token", "country_code"),
        ("cdr_token", "party_id"),
        ("cdr_token", "uid"),
        ("cdr_location", "id"),
        ("cdr_location", "evse_uid"),
        ("currency",),
    ):
        mine, theirs = key_of(facts.doc, *path), key_of(original, *path)
        if mine != theirs:
            name = ".".join(path)
            yield Issue(f"{name} is {text(facts.doc, *path)} but {text(original, *path)} in the credited CDR",
                        "/" + "/".join(path))  # fmt: skip
    for name in ("start_date_time", "end_date_time"):
        mine_at, theirs_at = timestamp(facts.doc.get(name)), timestamp(original.get(name))
        if mine_at != theirs_at:
            yield Issue(f"{name} differs from the credited CDR's", f"/{name}")


@rule("CDR095", Severity.WARNING, "credit_reference_id on a CDR that is not a credit", catalogue="CRD-LINK")
def reference_without_credit(facts: Facts) -> Iterator[Issue]:
    if not facts.cdr.credit and "credit_reference_id" in facts.doc:
        yield Issue("credit_reference_id is set but credit is not true; the CDR is taken as a normal CDR",
                    "/credit")  # fmt: skip


@rule("CDR096", Severity.WARNING, "credit CDR data differs from the credited CDR", catalogue="CRD-LINK", store=True)
def credit_copies_data(facts: Facts) -> Iterator[Issue]:
    original = _original(facts)
    if original is None:
        return
    for name in PRICE_FIELDS[1:]:
        for basis in ("excl_vat", "incl_vat"):
            mine, theirs = _amount(facts.doc, name, basis), _amount(original, name, basis)
            # The spec negates only total_cost; many CPOs negate every amount. Both are accepted.
            if mine is None and theirs is None:
                continue
            if mine is None or theirs is None or (mine not in (theirs, -theirs)):
                yield Issue(f"{name}.{basis} is {mine} but {theirs} in the credited CDR", f"/{name}/{basis}")
    for volume in ("total_energy", "total_time", "total_parking_time"):
        mine, theirs = number(facts.doc.get(volume)), number(original.get(volume))
        if (mine or Decimal(0)) != (theirs or Decimal(0)) and mine != -(theirs or Decimal(0)):
            yield Issue(f"{volume} is {mine} but {theirs} in the credited CDR", f"/{volume}")
    if ci_text(facts.doc.get("country_code")) != ci_text(original.get("country_code")):  # pragma: no cover - keyed
        yield Issue("the credit CDR belongs to another CPO", "/country_code")
