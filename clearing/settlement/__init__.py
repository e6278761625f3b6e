"""Settlement of cleared CDRs: commercial terms, periods, statements, netting, disputes, exports (ADR 0208)."""
