"""The StackExchange.Redis / redis:// parser: keys, defaults, errors, secrecy, round trips."""

from __future__ import annotations

import logging
import re
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apphost_sdk.connection_strings import (
    _KEYS,
    RedisConnectionOptions,
    RedisEndpoint,
    is_azure_redis_host,
)
from apphost_sdk.errors import ConfigurationError

SECRET = "S3cretPassw0rdXYZ"


def test_local_aspire_string() -> None:
    options = RedisConnectionOptions.parse(f"localhost:6380,password={SECRET}")
    assert options.endpoints == (RedisEndpoint("localhost", 6380),)
    assert options.password == SECRET
    kwargs = options.to_redis_kwargs()
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == ("localhost", 6380, SECRET)
    assert "ssl" not in kwargs


@pytest.mark.parametrize(
    ("text", "port", "tls"),
    [
        ("cache.redis.cache.windows.net,ssl=true", 6380, True),
        ("cache.redis.cache.windows.net", 6379, False),
        ("cache.redis.cache.windows.net:6390,ssl=True", 6390, True),
        ("host,ssl=1", 6380, True),
        ("host,ssl=off", 6379, False),
    ],
)
def test_port_defaults(text: str, port: int, tls: bool) -> None:
    options = RedisConnectionOptions.parse(text)
    assert options.tls is tls
    assert options.to_redis_kwargs()["port"] == port


def test_every_reference_key_parses_and_maps() -> None:
    text = (
        " h1:7000 , [::1]:7001,h3 ,,password=p=w,user=alice,ssl=yes,sslHost=cn.example,"
        "sslProtocols=Tls12|Tls13,abortConnect=false,connectTimeout=1500,syncTimeout=2500,"
        "asyncTimeout=3500,connectRetry=5,defaultDatabase=3,name=svc,keepAlive=30,"
        "serviceName=mymaster,protocol=resp3,allowAdmin=true,tiebreaker=,configChannel=cc,"
        "version=7.2,proxy=None,resolveDns=no,checkCertificateRevocation=off,setlib=false,"
        "highIntegrity=on,tunnel=http:proxy:8080,ABORTCONNECT=true"
    )
    o = RedisConnectionOptions.parse(text)
    assert o.endpoints == (
        RedisEndpoint("h1", 7000),
        RedisEndpoint("::1", 7001),
        RedisEndpoint("h3"),
    )
    assert o.password == "p=w"  # split on the first '=' only
    assert (o.user, o.ssl, o.ssl_host, o.abort_connect) == ("alice", True, "cn.example", True)
    assert (o.connect_timeout, o.sync_timeout, o.async_timeout) == (1500, 2500, 3500)
    assert (o.connect_retry, o.default_database, o.name, o.keep_alive) == (5, 3, "svc", 30)
    assert (o.service_name, o.protocol, o.allow_admin, o.tiebreaker) == ("mymaster", 3, True, "")
    assert (o.resolve_dns, o.check_certificate_revocation, o.setlib) == (False, False, False)
    assert (o.high_integrity, o.tunnel, o.version, o.proxy) == (
        True,
        "http:proxy:8080",
        "7.2",
        "None",
    )
    kw = o.to_redis_kwargs()
    assert kw["username"] == "alice" and kw["password"] == "p=w" and kw["ssl"] is True
    assert kw["ssl_min_version"] == ssl.TLSVersion.TLSv1_2
    assert kw["socket_connect_timeout"] == 1.5 and kw["socket_timeout"] == 2.5
    assert o.to_redis_kwargs(for_async=True)["socket_timeout"] == 3.5
    assert kw["db"] == 3 and kw["client_name"] == "svc" and kw["protocol"] == 3
    assert kw["lib_name"] is None and kw["retry"].get_retries() == 5
    assert "sslHost" not in str(kw)


def test_ignored_keys_are_logged_at_debug_without_values(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="apphost_sdk.connection_strings"):
        RedisConnectionOptions.parse(f"h,allowAdmin=true,password={SECRET},$INFO=")
    assert "allowAdmin" in caplog.text and "no redis-py" in caplog.text
    assert SECRET not in caplog.text


def test_unknown_key_is_an_error_naming_the_key_not_the_value() -> None:
    with pytest.raises(ConfigurationError, match="passwrd") as info:
        RedisConnectionOptions.parse(f"h,passwrd={SECRET}")
    assert SECRET not in str(info.value)
    assert "ignoreUnknown" in str(info.value)


def test_ignore_unknown_accepts_unknown_keys_in_any_position() -> None:
    options = RedisConnectionOptions.parse("h,bogus=1,ignoreUnknown=true")
    assert options.endpoints == (RedisEndpoint("h"),)
    assert options.ignore_unknown is True


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("h,ssl=maybe", "ssl"),
        ("h,connectTimeout=soon", "connectTimeout"),
        ("h:notaport", "port that is not a number"),
        ("h:70000", "out of range"),
        ("h,protocol=resp4", "protocol"),
        ("[::1", "unclosed"),
    ],
)
def test_malformed_values_are_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        RedisConnectionOptions.parse(text)


def test_errors_never_echo_values_that_may_hold_password_fragments() -> None:
    # A password with a comma spills into the next item; its pieces must not be echoed.
    for text in (
        "h,password=ab,cdSECRET:xy",
        "h,password=ab,connectTimeout=cdSECRET",
        "h,password=ab,cdSECRET=xy",
        "h,password=ab,cd,efSECRET=xy",
    ):
        with pytest.raises(ConfigurationError) as info:
            RedisConnectionOptions.parse(text)
        assert "cdSECRET" not in str(info.value) and "efSECRET" not in str(info.value)
    with pytest.raises(ConfigurationError, match=r"item after password=.*comma"):
        RedisConnectionOptions.parse("h,password=ab,cdSECRET=xy")


def test_keys_after_a_password_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="apphost_sdk.connection_strings"):
        RedisConnectionOptions.parse("h,ignoreUnknown=true,password=ab,cdSECRET=xy")
        RedisConnectionOptions.parse("h,password=ab,$cdSECRET=xy")
    assert "item after password=" in caplog.text
    assert "cdSECRET" not in caplog.text
    # A typo elsewhere is still named.
    with pytest.raises(ConfigurationError, match="passwrd"):
        RedisConnectionOptions.parse("h,password=ab,ssl=true,passwrd=x")


def test_configuration_options_property_names_are_accepted() -> None:
    options = RedisConnectionOptions.parse("h").with_values(
        {
            "ConfigurationChannel": "cc",
            "DefaultVersion": "7.2",
            "SetClientLibrary": "false",
            "HeartbeatInterval": "00:00:01",
            "HeartbeatConsistencyChecks": "true",
        },
        aliases=True,
    )
    assert (options.config_channel, options.version, options.setlib) == ("cc", "7.2", False)
    assert options.to_redis_kwargs()["lib_name"] is None
    assert options.render() == "h,configChannel=cc,version=7.2,setlib=false"
    with pytest.raises(ConfigurationError, match="HeartbeatInterval"):
        RedisConnectionOptions.parse("h").with_values({"HeartbeatInterval": "1"})


def test_password_never_in_repr_or_str() -> None:
    options = RedisConnectionOptions.parse(f"h,password={SECRET}")
    assert SECRET not in repr(options)
    assert SECRET not in str(options)
    assert "***" in repr(options)


def test_no_endpoint_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="no endpoint"):
        RedisConnectionOptions.parse("password=x").to_redis_kwargs()


def test_urls() -> None:
    o = RedisConnectionOptions.parse(f"rediss://bob:{SECRET}%2C@example.com/2?protocol=3")
    assert (o.user, o.password, o.ssl, o.default_database) == ("bob", SECRET + ",", True, 2)
    assert o.protocol == 3
    assert o.to_redis_kwargs()["port"] == 6380
    plain = RedisConnectionOptions.parse("redis://:pw@localhost:1234")
    assert plain.endpoints == (RedisEndpoint("localhost", 1234),) and plain.user is None
    with pytest.raises(ConfigurationError, match="client_nam"):
        RedisConnectionOptions.parse("redis://h?client_nam=x")


def test_render_matches_aspire_forms() -> None:
    local = RedisConnectionOptions((RedisEndpoint("localhost", 6379),), password="abc")
    assert local.render() == "localhost:6379,password=abc"
    azure = RedisConnectionOptions((RedisEndpoint("c.redis.cache.windows.net"),), ssl=True)
    assert azure.render() == "c.redis.cache.windows.net,ssl=true"
    assert local.render_uri() == "redis://:abc@localhost:6379"
    assert azure.render_uri() == "rediss://c.redis.cache.windows.net:6380"


def test_azure_hosts() -> None:
    assert is_azure_redis_host("x.redis.cache.windows.net")
    assert is_azure_redis_host("X.REDIS.AZURE.NET.")
    assert not is_azure_redis_host("redis.cache.windows.net.evil.com")


# -- values that used to fail only when connecting -----------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("h,keepAlive=99999999999999999999", "keepAlive"),
        ("h,keepAlive=40000", "keepAlive"),
        ("h,keepAlive=-2", "keepAlive"),
        ("h,connectTimeout=-5", "connectTimeout"),
        ("h,connectTimeout=2147483648", "connectTimeout"),
        ("h,syncTimeout=-1", "syncTimeout"),
        ("h,asyncTimeout=-1", "asyncTimeout"),
        ("h,connectRetry=-1", "connectRetry"),
        ("h,defaultDatabase=-1", "defaultDatabase"),
        ("h,configCheckSeconds=-1", "configCheckSeconds"),
        ("h,responseTimeout=-1", "responseTimeout"),
        ("h,writeBuffer=-1", "writeBuffer"),
        ("redis://h/-1", "defaultDatabase"),
        ("redis://h?db=99999999999", "defaultDatabase"),
        ("redis://h?keepAlive=99999999999999999999", "keepAlive"),
    ],
)
def test_out_of_range_numbers_are_errors_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"key {key} is out of range: it must be from"):
        RedisConnectionOptions.parse(text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("h,connectTimeout=1_000", "connectTimeout"),  # Python's int() would take these
        ("h,defaultDatabase=\u0663", "defaultDatabase"),
        ("h,keepAlive=1.5", "keepAlive"),
        ("h,syncTimeout=", "syncTimeout"),
    ],
)
def test_numbers_are_ascii_whole_numbers(text: str, key: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"key {key} must be a whole number"):
        RedisConnectionOptions.parse(text.encode().decode("unicode_escape"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1.2.3.4:6379:extra", "item 1 of the Redis connection string is malformed"),
        ("h1,host:1:2:3", "item 2 of the Redis connection string is malformed"),
        (":6379", "item 1 of the Redis connection string has no host"),
        ("h:0", "item 1 of the Redis connection string has a port out of range"),
        ("h:6_379", "item 1 of the Redis connection string has a port that is not a number"),
        ("h:", "item 1 of the Redis connection string has a port that is not a number"),
        ("[not-an-ip]:6379", "only an IPv6 address goes in brackets"),
        ("[]:6379", "only an IPv6 address goes in brackets"),
        ("[::1]x", "malformed"),
        ("[::1]:0", "port out of range"),
        ("my host:6379", "has a host with whitespace"),
        ("h/x:6379", "has a host with whitespace"),
        ("redis://host:0", "redis URL has a port out of range"),
        ("redis://host:65536", "redis URL has an invalid host or port"),
        ("redis://host:6379:extra", "redis URL has an invalid host or port"),
        ("redis://:6379", "redis URL has a port but no host"),
        ("redis://a%20b:6379", "redis URL has a host with whitespace"),
    ],
)
def test_malformed_endpoints_are_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        RedisConnectionOptions.parse(text)


def test_endpoint_settings_name_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="setting EndPoints:1 is malformed"):
        RedisConnectionOptions.parse("h").with_values(
            {"EndPoints:1": "1.2.3.4:6379:x"}, aliases=True
        )


def test_malformed_endpoint_errors_never_echo_the_token() -> None:
    for text in (
        "h,password=ab,cd SECRET:1",
        "h,password=ab,1:2:cdSECRET",
        "h,password=a,[cdSECRET]",
    ):
        with pytest.raises(ConfigurationError) as info:
            RedisConnectionOptions.parse(text)
        assert "SECRET" not in str(info.value)


def test_options_and_endpoints_built_directly_are_checked_too() -> None:
    with pytest.raises(ConfigurationError, match="key keepAlive is out of range"):
        RedisConnectionOptions((RedisEndpoint("h"),), keep_alive=10**20)
    with pytest.raises(ConfigurationError, match="port out of range"):
        RedisEndpoint("h", 0)
    with pytest.raises(ConfigurationError, match="malformed"):
        RedisEndpoint("1.2.3.4:6379:extra")


@pytest.mark.parametrize(
    "text",
    [
        "h,keepAlive=-1",
        "h,keepAlive=32767",
        "h,connectTimeout=0,syncTimeout=2147483647,defaultDatabase=0",
        "h:1,h2:65535,[::1],::1,[fe80::1%eth0]:7000,10.0.0.1:6380",
        "h,connectTimeout= +15 ",
        "redis://h:1/0",
    ],
)
def test_in_range_values_and_endpoint_forms_still_parse(text: str) -> None:
    RedisConnectionOptions.parse(text)


# -- property-based round trips --------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_characters=",", blacklist_categories=("Cs", "Cc", "Zs")),
    max_size=12,
).filter(lambda s: s == s.strip())
_host = st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True) | st.sampled_from(
    ["::1", "fe80::2"]
)
_endpoint = st.builds(RedisEndpoint, _host, st.none() | st.integers(1, 65535))
_kinds = {"ssl": st.booleans(), "protocol": st.sampled_from([2, 3])}


def _strategy_for(attr: str, convert: object) -> st.SearchStrategy[object]:
    from apphost_sdk import connection_strings as cs

    if attr in _kinds:
        return _kinds[attr]
    if convert is cs._to_bool:
        return st.booleans()
    if isinstance(convert, cs._IntRange):
        # The whole range a key takes, bounds included (outside it, parse refuses).
        return st.integers(convert.low, convert.high)
    return _text


_fields = {attr: st.none() | _strategy_for(attr, conv) for attr, conv, _m in _KEYS.values()}
_options = st.builds(
    RedisConnectionOptions, st.lists(_endpoint, min_size=1, max_size=3).map(tuple), **_fields
)


@settings(max_examples=300, deadline=None)
@given(_options)
def test_render_then_parse_round_trips(options: RedisConnectionOptions) -> None:
    assert RedisConnectionOptions.parse(options.render()) == options


@settings(max_examples=200, deadline=None)
@given(
    _host,
    st.integers(1, 65535),
    st.none() | st.text(max_size=10),
    st.none() | st.text(min_size=1, max_size=10),
    st.booleans(),
    st.none() | st.integers(0, 15),
)
def test_uri_round_trips(
    host: str, port: int, password: str | None, user: str | None, tls: bool, db: int | None
) -> None:
    options = RedisConnectionOptions(
        (RedisEndpoint(host, port),),
        password=password,
        user=user,
        ssl=tls or None,
        default_database=db,
    )
    back = RedisConnectionOptions.parse(options.render_uri())
    assert (back.password, back.user, back.tls, back.default_database) == (
        password,
        user,
        tls,
        db,
    )
    assert back.endpoints == options.endpoints


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_parse_never_crashes_unexpectedly(text: str) -> None:
    try:
        RedisConnectionOptions.parse(text)
    except ConfigurationError:
        pass
