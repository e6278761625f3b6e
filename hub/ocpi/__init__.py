"""Pure OCPI 2.2.1 wire protocol: msgspec Structs, codec, envelope and HTTP header helpers.

This package imports only the standard library and msgspec (enforced by an import-linter
contract), so every other layer can depend on it without pulling in I/O or framework code.
Version-specific objects live in `hub.ocpi.v2_2_1`; call sites write
``from hub.ocpi import v2_2_1 as ocpi``.
"""
