"""Header names and the ``Authorization: Token …`` helper (transport §4.1.2, hub notes §1.1)."""

from __future__ import annotations

import base64

import pytest

from hub.ocpi import headers


def test_header_names_and_lower_case_forms() -> None:
    pairs = {
        headers.AUTHORIZATION: headers.AUTHORIZATION_LC,
        headers.X_REQUEST_ID: headers.X_REQUEST_ID_LC,
        headers.X_CORRELATION_ID: headers.X_CORRELATION_ID_LC,
        headers.OCPI_FROM_COUNTRY_CODE: headers.OCPI_FROM_COUNTRY_CODE_LC,
        headers.OCPI_FROM_PARTY_ID: headers.OCPI_FROM_PARTY_ID_LC,
        headers.OCPI_TO_COUNTRY_CODE: headers.OCPI_TO_COUNTRY_CODE_LC,
        headers.OCPI_TO_PARTY_ID: headers.OCPI_TO_PARTY_ID_LC,
        headers.LINK: headers.LINK_LC,
        headers.X_TOTAL_COUNT: headers.X_TOTAL_COUNT_LC,
        headers.X_LIMIT: headers.X_LIMIT_LC,
    }
    assert list(pairs) == [
        "Authorization",
        "X-Request-ID",
        "X-Correlation-ID",
        "OCPI-from-country-code",
        "OCPI-from-party-id",
        "OCPI-to-country-code",
        "OCPI-to-party-id",
        "Link",
        "X-Total-Count",
        "X-Limit",
    ]
    assert all(name.lower() == lower for name, lower in pairs.items())


def test_encode_token_base64_uses_rfc4648_with_padding_and_no_newline() -> None:
    assert headers.encode_token("example-token") == "Token ZXhhbXBsZS10b2tlbg=="
    assert headers.encode_token("example-token", "base64") == "Token ZXhhbXBsZS10b2tlbg=="
    # Standard alphabet: bytes that map to '+' and '/' must not come out URL-safe.
    value = headers.encode_token(">>>???")
    assert value == "Token Pj4+Pz8/"


def test_encode_token_raw() -> None:
    assert headers.encode_token("ebf3b399-779f-4497", "raw") == "Token ebf3b399-779f-4497"
    with pytest.raises(ValueError, match="Unknown token form"):
        headers.encode_token("x", "hex")  # type: ignore[arg-type]


def test_parse_base64_header_gives_decoded_token_first_then_raw() -> None:
    assert headers.parse_authorization("Token ZXhhbXBsZS10b2tlbg==") == [
        ("example-token", "base64"),
        ("ZXhhbXBsZS10b2tlbg==", "raw"),
    ]


def test_parse_raw_header_that_is_not_base64() -> None:
    token = "ebf3b399-779f-4497-9b9d-ac6ad3cc44d2"
    assert headers.parse_authorization(f"Token {token}") == [(token, "raw")]


def test_parse_raw_header_whose_base64_decoding_is_not_printable() -> None:
    # "abcd" is valid Base64 but decodes to bytes 0x69 0xb7 0x1d: not a token, so only the raw one.
    assert headers.parse_authorization("Token abcd") == [("abcd", "raw")]


def test_spec_example_with_trailing_newline_is_not_taken_as_base64() -> None:
    # The spec text encodes "example-token\n" (echo without -n); a newline is never part of a token.
    assert base64.b64decode("ZXhhbXBsZS10b2tlbgo=") == b"example-token\n"
    assert headers.parse_authorization("Token ZXhhbXBsZS10b2tlbgo=") == [("ZXhhbXBsZS10b2tlbgo=", "raw")]


def test_round_trip_of_both_forms() -> None:
    token = "9e80a9c4-28be-11e9-b210-d663bd873d93"
    for form in ("base64", "raw"):
        candidates = headers.parse_authorization(headers.encode_token(token, form))
        assert (token, form) in candidates


@pytest.mark.parametrize(
    "value",
    [None, "", "Token", "Token ", "Bearer ZXhhbXBsZS10b2tlbg==", "Basic dXNlcjpwYXNz", "Token has space", "Token é"],
)
def test_parse_rejects_missing_or_foreign_headers(value: str | None) -> None:
    assert headers.parse_authorization(value) == []


def test_scheme_is_case_insensitive_and_whitespace_tolerant() -> None:
    assert headers.parse_authorization("  token   ZXhhbXBsZS10b2tlbg==  ")[0] == ("example-token", "base64")


def test_is_valid_token() -> None:
    assert headers.is_valid_token("!~" + "a" * 62)
    assert not headers.is_valid_token("a" * 65)
    assert not headers.is_valid_token("")
    assert not headers.is_valid_token("a b")
