"""Redis output caching: a real Starlette/FastAPI app over the real middleware and redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from apphost_sdk.caching.deferred import DeferredAsyncRedis
from apphost_sdk.caching.output_policy import (
    OutputCachePolicy,
    StoredResponse,
    cache_key,
    request_cacheable,
    response_cacheable,
)
from apphost_sdk.caching.output_store import RedisOutputCacheStore
from apphost_sdk.hosting import HostApplicationBuilder
from apphost_sdk.hosting.asgi import cache_lifespan
from apphost_sdk.hosting.output_cache import (
    OutputCacheMiddleware,
    output_cache,
)

from .redis_cluster import RedisClusterProcess
from .redis_process import RedisProcess, free_port


class Counter:
    """Counts endpoint runs per name."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}

    def hit(self, name: str) -> int:
        self.runs[name] = self.runs.get(name, 0) + 1
        return self.runs[name]


def make_app(counter: Counter, *, delay: float = 0.0) -> Starlette:
    """A Starlette app whose endpoints report how often they ran."""

    @output_cache(
        expiration=timedelta(seconds=30),
        vary_by_query=("q",),
        vary_by_header=("Accept-Language",),
        tags=("products",),
    )
    async def products(request: Request) -> Response:
        run = counter.hit("products")
        if delay:
            await asyncio.sleep(delay)
        q = request.query_params.get("q", "")
        lang = request.headers.get("accept-language", "")
        return JSONResponse({"run": run, "q": q, "lang": lang}, headers={"ETag": f'"p{run}"'})

    @output_cache(expiration=1.5)
    async def short(request: Request) -> Response:
        return PlainTextResponse(f"run {counter.hit('short')}")

    @output_cache(tags="users")
    async def users(request: Request) -> Response:
        return PlainTextResponse(f"run {counter.hit('users')}")

    async def uncached(request: Request) -> Response:
        return PlainTextResponse(f"run {counter.hit('uncached')}")

    @output_cache()
    async def cookie(request: Request) -> Response:
        response = PlainTextResponse(f"run {counter.hit('cookie')}")
        response.set_cookie("session", "s")
        return response

    @output_cache()
    async def missing(request: Request) -> Response:
        return PlainTextResponse(f"run {counter.hit('missing')}", status_code=404)

    @output_cache()
    async def post(request: Request) -> Response:
        return PlainTextResponse(f"run {counter.hit('post')}")

    def stream_of(name: str, chunks: int) -> Callable[[Request], Awaitable[Response]]:
        @output_cache()
        async def stream(request: Request) -> Response:
            run = counter.hit(name)

            async def body() -> AsyncIterator[bytes]:
                for i in range(chunks):
                    yield f"{run}:{i};".encode()

            return StreamingResponse(body(), media_type="text/plain")

        return stream

    return Starlette(
        routes=[
            Route("/products", products),
            Route("/short", short),
            Route("/users", users),
            Route("/uncached", uncached),
            Route("/cookie", cookie),
            Route("/missing", missing),
            Route("/post", post, methods=["GET", "POST"]),
            Route("/stream/small", stream_of("small", 3)),
            Route("/stream/big", stream_of("big", 200)),
            Mount("/api", routes=[Route("/products", products)]),
        ]
    )


def wrap(app: Starlette, store: RedisOutputCacheStore, **kwargs: Any) -> Starlette:
    app.add_middleware(OutputCacheMiddleware, store=store, max_body_bytes=1000, **kwargs)
    return app


def run_with(
    redis_server: RedisProcess,
    scenario: Callable[[RedisOutputCacheStore], Awaitable[None]],
) -> None:
    """Run ``scenario`` on a fresh event loop with a store over a real asyncio client."""

    async def main() -> None:
        client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        try:
            await scenario(RedisOutputCacheStore(client))
        finally:
            await client.aclose()

    asyncio.run(main())


def http(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_hit_miss_age_and_vary_rules(redis_server: RedisProcess, raw: redis.Redis) -> None:
    counter = Counter()

    async def scenario(store: RedisOutputCacheStore) -> None:
        async with http(wrap(make_app(counter), store)) as client:
            first = await client.get("/products", params={"q": "a"})
            assert first.status_code == 200 and "age" not in first.headers
            second = await client.get("/products", params={"q": "a", "unrelated": "x"})
            assert second.json() == first.json() == {"run": 1, "q": "a", "lang": ""}
            assert second.headers["age"] == "0"
            assert second.headers["etag"] == '"p1"'
            assert (await client.get("/products", params={"q": "b"})).json()["run"] == 2
            fr = await client.get("/products?q=a", headers={"Accept-Language": "fr"})
            assert fr.json() == {"run": 3, "q": "a", "lang": "fr"}
            again = await client.get("/products?q=a", headers={"accept-language": "fr"})
            assert again.json()["run"] == 3
            # the mounted copy has its own path, hence its own entry
            assert (await client.get("/api/products?q=a")).json()["run"] == 4
            # HEAD is cached apart from GET and never carries a body
            head = await client.head("/products?q=a")
            assert head.status_code == 200 and head.content == b""
            # conditional request on a hit: 304
            cond = await client.get("/products?q=a", headers={"If-None-Match": '"p1"'})
            assert cond.status_code == 304 and cond.content == b""
            # only-if-cached on a miss: 504, and the endpoint does not run
            runs = counter.runs["products"]
            miss = await client.get("/products?q=zzz", headers={"Cache-Control": "only-if-cached"})
            assert miss.status_code == 504 and counter.runs["products"] == runs

    run_with(redis_server, scenario)
    keys = sorted(k.decode() if isinstance(k, bytes) else k for k in raw.keys("__PYOCV_*"))
    assert keys and all(k.startswith("__PYOCV_GET\x1eHTTP\x1eTEST") or "HEAD" in k for k in keys)
    assert 0 < raw.pttl(keys[0]) <= 30_000
    assert raw.zcard("__PYOCT_products") == len(keys)


def test_age_grows_with_the_entry(redis_server: RedisProcess, raw: redis.Redis) -> None:
    counter = Counter()
    now = [1000.0]

    async def scenario(store: RedisOutputCacheStore) -> None:
        async with http(wrap(make_app(counter), store, clock=lambda: now[0])) as client:
            await client.get("/users")
            now[0] += 7.9
            response = await client.get("/users")
            assert response.text == "run 1" and response.headers["age"] == "7"

    run_with(redis_server, scenario)


def test_what_is_never_cached(redis_server: RedisProcess, raw: redis.Redis) -> None:
    counter = Counter()

    async def scenario(store: RedisOutputCacheStore) -> None:
        app = wrap(make_app(counter), store)
        async with http(app) as client:
            for _ in range(2):
                assert (await client.post("/post")).status_code == 200
                assert (await client.get("/missing")).status_code == 404
                assert (await client.get("/cookie")).headers["set-cookie"].startswith("session=")
                auth = {"Authorization": "Bearer t"}
                assert (await client.get("/users", headers=auth)).text.startswith("run")
                await client.get("/uncached")
                await client.get(
                    "/products", params={"q": "\x1e"}
                )  # a separator in a part: not cacheable
            assert counter.runs == {
                "post": 2,
                "missing": 2,
                "cookie": 2,
                "users": 2,
                "uncached": 2,
                "products": 2,
            }
            # a GET after the authorized ones is cached normally
            assert (await client.get("/users")).text == "run 3"
            assert (await client.get("/users")).text == "run 3"

    run_with(redis_server, scenario)
    assert len(raw.keys("__PYOCV_*")) == 1


def test_default_policy_and_no_store(redis_server: RedisProcess, raw: redis.Redis) -> None:
    counter = Counter()

    async def scenario(store: RedisOutputCacheStore) -> None:
        app = make_app(counter)

        @output_cache(no_store=True)
        async def live(request: Request) -> Response:
            return PlainTextResponse(f"run {counter.hit('live')}")

        app.router.routes.append(Route("/live", live))
        wrap(app, store, default_policy=OutputCachePolicy(expiration=5))
        async with http(app) as client:
            assert (await client.get("/uncached")).text == "run 1"
            assert (await client.get("/uncached")).text == "run 1"
            assert (await client.get("/live")).text == "run 1"
            assert (await client.get("/live")).text == "run 2"

    run_with(redis_server, scenario)


def test_expiration(redis_server: RedisProcess, raw: redis.Redis) -> None:
    counter = Counter()

    async def scenario(store: RedisOutputCacheStore) -> None:
        async with http(wrap(make_app(counter), store)) as client:
            assert (await client.get("/short")).text == "run 1"
            assert (await client.get("/short")).text == "run 1"
            deadline = time.monotonic() + 8
            while (await client.get("/short")).text == "run 1":
                assert time.monotonic() < deadline, "the 1.5 s entry never expired"
                await asyncio.sleep(0.05)
            assert counter.runs["short"] == 2

    run_with(redis_server, scenario)


def test_evict_by_tag(redis_server: RedisProcess, raw: redis.Redis) -> None:
    counter = Counter()

    async def scenario(store: RedisOutputCacheStore) -> None:
        async with http(wrap(make_app(counter), store)) as client:
            for q in ("a", "b"):
                await client.get("/products", params={"q": q})
            await client.get("/users")
            assert await store.evict_by_tag("products") == 2
            assert (await client.get("/products?q=a")).json()["run"] == 3
            assert (await client.get("/users")).text == "run 1"  # other tags untouched
            assert await store.evict_by_tag("nothing-tagged") == 0

    run_with(redis_server, scenario)
    assert raw.sismember("__PYOCT", "users")


def test_garbage_collection_trims_expired_tag_members(
    redis_server: RedisProcess, raw: redis.Redis
) -> None:
    async def scenario(store: RedisOutputCacheStore) -> None:
        await store.set("k1", b"v", expiration=timedelta(seconds=30), tags=("t", "u"))
        later = RedisOutputCacheStore(store._client, clock=lambda: time.time() + 60)
        assert await store.collect_garbage() == 0
        assert await later.collect_garbage() == 2
        assert await store.get("k1") == b"v"  # the value lives by its own TTL

    run_with(redis_server, scenario)
    assert raw.smembers("__PYOCT") == set()


def test_stampede_runs_the_endpoint_once(redis_server: RedisProcess, raw: redis.Redis) -> None:
    counter = Counter()

    async def scenario(store: RedisOutputCacheStore) -> None:
        async with http(wrap(make_app(counter, delay=0.2), store)) as client:
            responses = await asyncio.gather(*(client.get("/products?q=hot") for _ in range(50)))
            assert {r.status_code for r in responses} == {200}
            assert {r.json()["run"] for r in responses} == {1}
            assert counter.runs["products"] == 1

    run_with(redis_server, scenario)


def test_two_app_instances_share_entries(redis_server: RedisProcess, raw: redis.Redis) -> None:
    first, second = Counter(), Counter()

    async def scenario(store: RedisOutputCacheStore) -> None:
        other = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        try:
            app_a = wrap(make_app(first), store)
            app_b = wrap(make_app(second), RedisOutputCacheStore(other))
            async with http(app_a) as a, http(app_b) as b:
                assert (await a.get("/products?q=x")).json()["run"] == 1
                shared = await b.get("/products?q=x")
                assert shared.json()["run"] == 1 and "age" in shared.headers
                assert "products" not in second.runs
                await RedisOutputCacheStore(other).evict_by_tag("products")
                assert (await a.get("/products?q=x")).json()["run"] == 2
        finally:
            await other.aclose()

    run_with(redis_server, scenario)


def test_streaming_responses(redis_server: RedisProcess, raw: redis.Redis) -> None:
    counter = Counter()

    async def scenario(store: RedisOutputCacheStore) -> None:
        async with http(wrap(make_app(counter), store)) as client:
            small = [(await client.get("/stream/small")).text for _ in range(2)]
            assert small == ["1:0;1:1;1:2;"] * 2 and counter.runs["small"] == 1
            big = [(await client.get("/stream/big")).text for _ in range(2)]
            # over max_body_bytes (1000): served whole, never stored
            assert big[0].startswith("1:0;") and big[0].endswith("1:199;")
            assert big[1].startswith("2:0;") and counter.runs["big"] == 2

    run_with(redis_server, scenario)


def test_redis_down_serves_uncached(caplog: pytest.LogCaptureFixture) -> None:
    counter = Counter()

    async def main() -> None:
        client = aioredis.Redis(
            host="127.0.0.1",
            port=free_port(),
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            async with http(wrap(make_app(counter), RedisOutputCacheStore(client))) as http_:
                assert (await http_.get("/users")).text == "run 1"
                assert (await http_.get("/users")).text == "run 2"
        finally:
            await client.aclose()

    asyncio.run(main())
    assert "output cache: reading an entry failed" in caplog.text


def test_fastapi_route_with_registered_store(redis_server: RedisProcess, raw: redis.Redis) -> None:
    builder = HostApplicationBuilder(
        environ={
            "ConnectionStrings__cache": redis_server.connection_string,
            "ConnectionStrings__pages": redis_server.connection_string,
        },
        content_root=Path("/nonexistent"),
        configure_logging=False,
    )
    builder.add_redis_output_cache("cache")
    builder.add_redis_output_cache("cache")  # a second registration is harmless
    keyed = builder.add_keyed_redis_output_cache("pages")
    host = builder.build()
    assert keyed.key == "pages"
    assert isinstance(
        host.services.get_keyed(RedisOutputCacheStore, "pages"), RedisOutputCacheStore
    )
    runs: list[int] = []
    app = FastAPI(lifespan=cache_lifespan(host))
    app.add_middleware(OutputCacheMiddleware, host=host)

    @app.get("/items/{item_id}")
    @output_cache(expiration=timedelta(seconds=10), tags=("items",))
    async def item(item_id: int) -> dict[str, int]:
        runs.append(item_id)
        return {"id": item_id, "run": len(runs)}

    @app.delete("/items")
    async def evict() -> dict[str, int]:
        return {"evicted": await host.services.get(RedisOutputCacheStore).evict_by_tag("items")}

    for _round in range(2):  # the lifespan closes clients; a second run resolves new ones
        with TestClient(app) as client:
            assert client.get("/items/1").json()["id"] == 1
            assert client.get("/items/1").headers.get("age") is not None
            client.get("/items/2")
            assert client.delete("/items").json() == {"evicted": 2}
    assert runs == [1, 2, 1, 2]


def test_policy_validation_errors() -> None:
    with pytest.raises(ValueError, match="expiration must be positive"):
        output_cache(expiration=0)
    with pytest.raises(TypeError, match="timedelta or seconds"):
        OutputCachePolicy(expiration="60")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tags must be non-empty"):
        output_cache(tags=("",))
    with pytest.raises(ValueError, match=r"header names .* 0x1E"):
        OutputCachePolicy(vary_by_header=("a\x1eb",))
    assert OutputCachePolicy(tags="one").tags == ("one",)
    with pytest.raises(ValueError, match=r"exactly one of store= .* or host="):
        OutputCacheMiddleware(make_app(Counter()))


def test_request_and_response_rules() -> None:
    assert request_cacheable("get", []) and request_cacheable("HEAD", [])
    assert not request_cacheable("POST", [])
    assert not request_cacheable("GET", [(b"Authorization", b"x")])
    assert response_cacheable(200, [(b"content-type", b"text/plain")])
    assert not response_cacheable(201, [])
    assert not response_cacheable(200, [(b"Set-Cookie", b"a=b")])


_text = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\x1e\x1f"))


def _key(policy: OutputCachePolicy, query: bytes, lang: str, host: str = "h:1") -> str | None:
    return cache_key(
        policy,
        method="GET",
        scheme="http",
        host=host,
        path="/p",
        query_string=query,
        headers=[(b"accept-language", lang.encode("latin-1")), (b"x-other", b"o")],
    )


@settings(max_examples=150, deadline=None)
@given(q1=_text, q2=_text, lang1=_text, lang2=_text, noise=_text)
def test_key_is_stable_and_distinct_for_distinct_vary_values(
    q1: str, q2: str, lang1: str, lang2: str, noise: str
) -> None:
    from urllib.parse import urlencode

    policy = OutputCachePolicy(vary_by_query=("q",), vary_by_header=("Accept-Language",))

    def query(q: str, extra: str) -> bytes:
        return urlencode({"z": extra, "Q": q}, encoding="latin-1").encode()

    k1 = _key(policy, query(q1, noise), lang1)
    assert k1 is not None
    # stable: same vary values, other query keys and headers do not matter
    assert _key(policy, query(q1, noise + "x"), lang1) == k1
    k2 = _key(policy, query(q2, noise), lang2)
    assert (k1 == k2) == (q1 == q2 and lang1 == lang2)


@settings(max_examples=100, deadline=None)
@given(host1=_text, path1=_text, host2=_text, path2=_text)
def test_host_and_path_cannot_forge_each_other(
    host1: str, path1: str, host2: str, path2: str
) -> None:
    policy = OutputCachePolicy(vary_by_query=())

    def key(host: str, path: str) -> str | None:
        return cache_key(
            policy,
            method="GET",
            scheme="http",
            host=host,
            path="/" + path,
            query_string=b"",
            headers=[],
        )

    same = host1.upper() == host2.upper() and path1 == path2
    assert (key(host1, path1) == key(host2, path2)) == same


@settings(max_examples=100, deadline=None)
@given(
    status=st.integers(100, 599),
    headers=st.lists(st.tuples(st.binary(min_size=1, max_size=8), st.binary(max_size=16))),
    body=st.binary(max_size=256),
    created=st.floats(0, 4e9),
    tags=st.lists(st.text(min_size=1, max_size=8), max_size=3),
)
def test_frame_round_trip(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, created: float, tags: list[str]
) -> None:
    entry = StoredResponse(status, tuple(headers), body, created, tuple(tags))
    data = entry.encode()
    assert StoredResponse.decode(data) == entry
    assert StoredResponse.decode(data[:7]) is None
    assert StoredResponse.decode(b"\x02" + data[1:]) is None


def test_host_without_a_store_names_the_fix(redis_server: RedisProcess) -> None:
    builder = HostApplicationBuilder(
        environ={"ConnectionStrings__cache": redis_server.connection_string},
        content_root=Path("/nonexistent"),
        configure_logging=False,
    )
    builder.add_redis_client("cache")
    host = builder.build()
    app = make_app(Counter())
    app.add_middleware(OutputCacheMiddleware, host=host)
    with TestClient(app) as client, pytest.raises(LookupError, match="add_redis_output_cache"):
        client.get("/users")
    host.close()


def test_query_names_cannot_forge_a_name_value_boundary() -> None:
    policy = OutputCachePolicy()
    forged = _key(policy, b"a%3DB=c", "")
    plain = _key(policy, b"a=B%3Dc", "")
    assert forged is not None and plain is not None and forged != plain
    # names keep their case: Starlette reads ?q= and ?Q= as different parameters
    assert _key(policy, b"q=1", "") != _key(policy, b"Q=1", "")


# a small alphabet full of separators finds forgeries; the latin-1 one finds the rest
_part = st.one_of(st.text(alphabet="aA=", max_size=3), _text)
_pairs = st.lists(st.tuples(_part, _part), max_size=3)


@settings(max_examples=200, deadline=None)
@given(name1=_part, value1=_part, name2=_part, value2=_part)
def test_one_query_parameter_gives_distinct_keys(
    name1: str, value1: str, name2: str, value2: str
) -> None:
    from urllib.parse import urlencode

    policy = OutputCachePolicy()
    k1 = _key(policy, urlencode([(name1, value1)], encoding="latin-1").encode(), "")
    k2 = _key(policy, urlencode([(name2, value2)], encoding="latin-1").encode(), "")
    assert k1 is not None and k2 is not None
    assert (k1 == k2) == ((name1, value1) == (name2, value2))


@settings(max_examples=200, deadline=None)
@given(pairs1=_pairs, pairs2=_pairs)
def test_query_names_and_values_give_distinct_keys(
    pairs1: list[tuple[str, str]], pairs2: list[tuple[str, str]]
) -> None:
    from urllib.parse import urlencode

    policy = OutputCachePolicy()

    def key(pairs: list[tuple[str, str]]) -> str | None:
        return _key(policy, urlencode(pairs, encoding="latin-1").encode(), "")

    def grouped(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
        names = sorted({n for n, _ in pairs})
        return [(n, [v for m, v in pairs if m == n]) for n in names]

    k1, k2 = key(pairs1), key(pairs2)
    assert k1 is not None and k2 is not None
    assert (k1 == k2) == (grouped(pairs1) == grouped(pairs2))


class CookieBackend(AuthenticationBackend):
    """A session-style backend: the ``session`` cookie names the signed-in user."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        name = conn.cookies.get("session")
        return None if name is None else (AuthCredentials(["authenticated"]), SimpleUser(name))


def test_signed_in_users_are_not_cached(redis_server: RedisProcess, raw: redis.Redis) -> None:
    from starlette.middleware.authentication import AuthenticationMiddleware

    runs: list[str] = []

    @output_cache()
    async def me(request: Request) -> Response:
        runs.append(request.user.display_name)
        return PlainTextResponse(f"{request.user.display_name or 'anonymous'} {len(runs)}")

    async def scenario(store: RedisOutputCacheStore) -> None:
        app = Starlette(routes=[Route("/me", me)])
        app.add_middleware(OutputCacheMiddleware, store=store)  # inner: sees scope["user"]
        app.add_middleware(AuthenticationMiddleware, backend=CookieBackend())
        async with http(app) as client:
            assert (await client.get("/me", headers={"Cookie": "session=ann"})).text == "ann 1"
            assert (await client.get("/me")).text == "anonymous 2"
            assert (await client.get("/me", headers={"Cookie": "session=bob"})).text == "bob 3"
            assert (await client.get("/me")).text == "anonymous 2"  # anonymous: cached
            assert (await client.get("/me", headers={"Cookie": "session=ann"})).text == "ann 4"

    run_with(redis_server, scenario)
    assert len(raw.keys("__PYOCV_*")) == 1


def test_waiter_with_only_if_cached_gets_504(redis_server: RedisProcess) -> None:
    runs: list[int] = []
    started, release = asyncio.Event(), asyncio.Event()

    @output_cache()
    async def slow(request: Request) -> Response:
        runs.append(1)
        started.set()
        await release.wait()
        return PlainTextResponse("not stored", status_code=404)

    async def scenario(store: RedisOutputCacheStore) -> None:
        async with http(wrap(Starlette(routes=[Route("/slow", slow)]), store)) as client:
            leader = asyncio.create_task(client.get("/slow"))
            await asyncio.wait_for(started.wait(), 10)
            waiter = asyncio.create_task(
                client.get("/slow", headers={"Cache-Control": "only-if-cached"})
            )
            await asyncio.sleep(0.2)  # the waiter reaches the leader's flight
            release.set()
            assert (await leader).status_code == 404
            assert (await waiter).status_code == 504
            assert len(runs) == 1

    run_with(redis_server, scenario)


def _cluster_client(cluster: RedisClusterProcess, *, deferred: bool) -> aioredis.Redis:
    kwargs = cluster.node_kwargs()

    def open_cluster() -> aiocluster.RedisCluster:
        return aiocluster.RedisCluster(host=cluster.host, port=cluster.port, **kwargs)

    if not deferred:
        return cast(aioredis.Redis, open_cluster())

    async def decide() -> bool:
        return True

    return DeferredAsyncRedis(
        decide=decide, open_cluster=open_cluster, host=cluster.host, port=cluster.port, **kwargs
    )


@pytest.mark.parametrize("deferred", [False, True], ids=["cluster", "deferred"])
def test_store_over_a_cluster(redis_cluster: RedisClusterProcess, deferred: bool) -> None:
    redis_cluster.each_node("FLUSHALL")
    keys = ["entry-a", "entry-b", "entry-c"]
    slots = {redis.cluster.key_slot(f"__PYOCV_{k}".encode()) for k in keys}
    assert len({s * len(redis_cluster.ports) // 16384 for s in slots}) > 1  # several nodes

    async def main() -> None:
        client = _cluster_client(redis_cluster, deferred=deferred)
        try:
            store = RedisOutputCacheStore(client)
            for k in keys:
                await store.set(k, k.encode(), expiration=timedelta(seconds=30), tags=("t",))
            assert [await store.get(k) for k in keys] == [k.encode() for k in keys]
            assert await store.evict_by_tag("t") == len(keys)
            assert [await store.get(k) for k in keys] == [None] * len(keys)
            assert await store.evict_by_tag("t") == 0
        finally:
            await client.aclose()

    asyncio.run(main())
