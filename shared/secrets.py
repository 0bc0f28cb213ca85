"""Sealing source secrets at rest with ``BYOM_SECRET_KEY``.

The key setting holds one or more Fernet keys separated by commas. The
first seals; every one of them opens, so a key is rotated by putting the
new key first, re-sealing (``byom admin reseal``) and then dropping the old
key (docs/operations.md).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBoxError(Exception):
    """A sealed secret could not be opened with the configured keys."""


class SecretBox:
    """Seal and open secrets with authenticated encryption (Fernet)."""

    def __init__(self, keys: str | None) -> None:
        names = [key.strip() for key in (keys or "").split(",") if key.strip()]
        if not names:
            raise ValueError(
                "BYOM_SECRET_KEY is not set: generate one with "
                "'byom admin secret-key' and set it on registry and router"
            )
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in names])
        except ValueError as exc:
            raise ValueError(
                "BYOM_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes), "
                "comma separated"
            ) from exc

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError(
                "a source secret cannot be opened with BYOM_SECRET_KEY"
            ) from exc

    def reseal(self, sealed: str) -> str:
        """Seal again under the first key, for key rotation."""
        try:
            return self._fernet.rotate(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError(
                "a source secret cannot be opened with BYOM_SECRET_KEY"
            ) from exc

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()
