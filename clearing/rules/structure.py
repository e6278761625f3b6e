"""Rules on the CDR as a document: is it an OCPI 2.2.1 CDR at all."""

from __future__ import annotations

from collections.abc import Iterator

from clearing.facts import Facts
from clearing.rules.base import Issue, Severity, rule


@rule("CDR001", Severity.ERROR, "not a valid OCPI 2.2.1 CDR", catalogue="SCHEMA")
def schema(facts: Facts) -> Iterator[Issue]:
    # Intake is liberal (DESIGN §5): the CDR is kept and checked, and the schema violation is reported here.
    problem = facts.cdr.wire_error
    if problem is not None:
        yield Issue(f"not a valid OCPI 2.2.1 CDR (mod_cdrs §10.3.1): {problem.message}", problem.pointer)
    if facts.cdr.view is None and facts.cdr.view_error:
        yield Issue(f"the CDR lacks what pricing needs: {facts.cdr.view_error}", "")
