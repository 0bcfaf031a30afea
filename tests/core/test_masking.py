"""Secrets are masked in every form they commonly take in output."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest

from apphost_sdk.errors import ValidationError
from apphost_sdk.masking import SecretMasker, connection_string_secrets
from apphost_sdk.orchestration.app import DistributedApplication


@pytest.mark.parametrize(
    "secret", ["plainSecret42", "p@ss:w/rd%", 'qu"ote\\back', "a b c d", "pässwörd", "k/ey+=="]
)
def test_every_common_encoding_of_a_secret_is_masked(secret: str) -> None:
    masker = SecretMasker([secret])
    for form in (
        secret,
        quote(secret, safe=""),
        quote(secret, safe="").lower() if "%" in quote(secret, safe="") else secret,
        quote_plus(secret),
        json.dumps(secret),
        json.dumps({"k": secret}),
        repr(secret),
        repr({"k": secret}),
    ):
        assert secret not in masker.mask(form)
        assert "***" in masker.mask(form), form


def test_secret_parts_of_connection_strings_are_found() -> None:
    assert connection_string_secrets("host:6380,password=Abc123,ssl=true") == ["Abc123"]
    assert "StorageKey==" in connection_string_secrets(
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=StorageKey=="
    )
    assert "s3cret" in connection_string_secrets("redis://:s3cret@localhost:6379/0")
    masker = SecretMasker()
    masker.add_connection_string("exthost:6380,password=ExtSecretPw99,ssl=true")
    assert masker.mask("pw is ExtSecretPw99,ssl=true") == "pw is ***,ssl=true"


def test_secrets_that_cannot_be_kept_secret_are_refused_by_name_not_value() -> None:
    b = DistributedApplication.create_builder([])
    b.add_redis("cache").with_password(b.add_parameter("pw", "ab1", secret=True))
    b.add_redis("cache2").with_password(b.add_parameter("pw2", "Abcd1234,Efgh5678"))
    with pytest.raises(ValidationError) as info:
        b.build()
    message = str(info.value)
    assert "parameter pw is a secret shorter than 4 characters" in message
    assert "parameter pw2, the password of cache2, contains a comma" in message
    assert "ab1" not in message.replace("cache", "") and "Efgh5678" not in message
