"""Roaming agreements between a CPO party and an eMSP party: whether they may exchange data (DESIGN §4).

Clearing adds the commercial terms (fees, currency, tolerance) to the same agreements later.
"""
