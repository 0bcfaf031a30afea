"""Quick start: a local Redis (standing in for Azure Cache for Redis) and a Python web API.

Run it with ``apphost run samples/quickstart/apphost.py`` (or ``python apphost.py``), or in the
background with ``apphost start samples/quickstart/apphost.py --json``.
"""

from apphost_sdk import DistributedApplication

builder = DistributedApplication.create_builder()

# In run mode a local Redis replaces the Azure cache: a container when a Docker engine is
# reachable, else a redis-server process.
cache = builder.add_azure_redis("cache").run_as_container()

(
    builder.add_python_app("api", "api", "app.py")
    .with_http_endpoint(env="PORT")
    .with_http_health_check("/health")
    .with_reference(cache)  # injects ConnectionStrings__cache, CACHE_HOST, CACHE_PORT, ...
    .wait_for(cache)  # starts once the cache answers PING
)

builder.build().run()
