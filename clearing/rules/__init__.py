"""The CDR validation rules (clearing notes §1.6 as far as it applies to OCPI 2.2.1; ADR 0203).

Each rule is a small function registered with a code (``CDR0xx``), a severity, a title and the catalogue entry it
implements; it yields issues with a message and a JSON pointer into the CDR. `run_rules` runs them all over a
`clearing.facts.Facts`. Rules that need what matching found in the database are skipped when the facts carry none
(a pre-flight check without the store). Codes by area:

* 001 the document: schema;
* 010-017 times; 020-024 volumes and energy; 030-034 currency and amounts;
* 040-041 duplicates; 050-054 session; 060-065 token; 070-072 location; 080-083 tariffs;
* 090-096 credit CDRs; 100-102 signed meter data.
"""

from clearing.rules import credits, matching, money, signed, structure, tariffs, timing, volumes
from clearing.rules.base import RULES, Finding, Issue, Rule, Severity, run_rules, validation_state

__all__ = [
    "RULES",
    "Finding",
    "Issue",
    "Rule",
    "Severity",
    "credits",
    "matching",
    "money",
    "run_rules",
    "signed",
    "structure",
    "tariffs",
    "timing",
    "validation_state",
    "volumes",
]
