"""Masking of secret values in anything the SDK prints or serializes."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote

MASK = "***"


class SecretMasker:
    """Replaces every known secret (and its URL-encoded form) in text by ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._ordered: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        """Register a secret; values shorter than 4 characters are ignored (too common)."""
        if not secret or len(secret) < 4:
            return
        with self._lock:
            for form in {secret, quote(secret, safe="")}:
                self._secrets.add(form)
            self._ordered = sorted(self._secrets, key=len, reverse=True)

    def contains_secret(self, text: str) -> bool:
        """True when ``text`` holds any registered secret."""
        return any(s in text for s in self._ordered)

    def mask(self, text: str) -> str:
        """Return ``text`` with every registered secret replaced by ``***``."""
        for s in self._ordered:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def mask_mapping(self, values: Mapping[str, str]) -> dict[str, str]:
        """Mask every value of a mapping."""
        return {k: self.mask(v) for k, v in values.items()}
