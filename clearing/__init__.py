"""The clearing house: CDR pricing, validation, agreements and settlement.

It may import the lower layers of ``hub`` (wire, platform) and never ``routing``; it learns about CDRs from the
database, not from routing's code.
"""
