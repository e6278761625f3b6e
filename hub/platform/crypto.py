"""Credentials token handling (DESIGN §7): inbound tokens as hashes, outbound tokens encrypted at rest."""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken


def new_token() -> str:
    # credentials §Credentials object: token is string(64) of printable non-whitespace ASCII; 43 URL-safe characters
    # carry 256 bits.
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """A lookup key for an inbound token; the token itself is never stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCipher:
    """Encrypts the tokens the hub sends to partners with a key derived from ``HUB_SECRET_KEY``."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to encrypt partner tokens")
        digest = hashlib.sha256(b"ocpi-hub/outbound-token/v1\x00" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("a stored partner token cannot be decrypted: HUB_SECRET_KEY changed?") from exc
