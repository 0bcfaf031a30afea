"""Masking of secret values in anything the SDK prints or serializes."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
#: Shorter secrets cannot be masked without garbling ordinary text; the SDK refuses them.
MIN_SECRET_LENGTH = 4

#: Keys of ``key=value`` connection strings (StackExchange.Redis, Azure storage, ADO) whose
#: values are secrets.
_SECRET_KEYS = frozenset(
    {
        "password",
        "pwd",
        "accountkey",
        "sharedaccesskey",
        "accesskey",
        "key",
        "token",
        "secret",
        "sig",
        "clientsecret",
    }
)


def encoded_forms(secret: str) -> set[str]:
    """The ways a secret commonly appears in output: as is, URL-encoded (either case of the
    escapes, ``+`` for spaces), JSON-escaped and ``repr``-escaped."""
    q = quote(secret, safe="")
    forms = {
        secret,
        q,
        quote(secret),
        quote_plus(secret),
        quote_plus(secret, safe=""),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), q),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def connection_string_secrets(value: str) -> list[str]:
    """The secret parts of a connection string: a URL's password and the values of
    ``password=``/``AccountKey=``-style keys (``,`` or ``;`` separated)."""
    out: list[str] = []
    try:
        parts = urlsplit(value.strip())
        if parts.scheme and parts.password:
            out += [parts.password, unquote(parts.password)]
    except ValueError:
        pass
    for sep in (",", ";"):
        for token in value.split(sep):
            key, eq, secret = token.partition("=")
            if eq and key.strip().replace(" ", "").casefold() in _SECRET_KEYS:
                out.append(secret.strip())
    return [s for s in out if s]


class SecretMasker:
    """Replaces every known secret (and its encoded forms) in text by ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._ordered: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        """Register a secret. Values shorter than ``MIN_SECRET_LENGTH`` are not masked (they
        would garble ordinary text): the SDK refuses such secrets where it takes them."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._secrets |= encoded_forms(secret)
            self._ordered = sorted(self._secrets, key=len, reverse=True)

    def add_connection_string(self, value: str | None) -> None:
        """Register the secret parts of a connection string (and the whole string)."""
        if not value:
            return
        secrets = connection_string_secrets(value)
        for s in secrets:
            self.add(s)
        if secrets:
            self.add(value)

    def mask(self, text: str) -> str:
        """Return ``text`` with every registered secret replaced by ``***``."""
        for s in self._ordered:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def mask_mapping(self, values: Mapping[str, str]) -> dict[str, str]:
        """Mask every value of a mapping."""
        return {k: self.mask(v) for k, v in values.items()}
