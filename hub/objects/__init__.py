"""The hub's stored OCPI objects (DESIGN §4): Locations, Tariffs (with version history), Tokens, Sessions and CDRs.

This package owns the tables that hold what the hub must keep: broadcast Locations, Tariffs and Tokens for "GET All"
(hub notes §1.9 item 4), every Session and CDR that passes (routing keys, resync and clearing inputs), and the
indexes routing needs (token (uid, type) → eMSP, session → eMSP). Objects are kept as the partner's raw JSON bytes so
unknown fields, number formatting and ``last_updated`` survive; PATCHes are merged in Python on plain dicts with
numbers kept as `Decimal`. `ObjectStore` never commits: callers pass their own `AsyncSession` and write their outbox
rows in the same transaction. It does not know about routing, broadcasting or clearing.
"""
