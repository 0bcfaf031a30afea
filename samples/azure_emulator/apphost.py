"""Azure Managed Redis and Azure Cache for Redis, provisioned for real against the local ARM
emulator, used by a FastAPI service through ``add_redis_distributed_cache``.

Start the emulator (it prints the settings to export), then run the app host::

    .venv/bin/python -m provisioning.emulator --env > /tmp/emulator.env &
    set -a; . /tmp/emulator.env; set +a
    .venv/bin/apphost run samples/azure_emulator/apphost.py

The emulator answers ARM like Azure (201 + Creating, then Succeeded) and backs each cache with a
real TLS ``redis-server`` on its own loopback address: Managed Redis as a small Redis Cluster
(the OSS clustering policy, Azure's default) on port 10000, the classic cache on 6380. Both use
Microsoft Entra ID: the service authenticates with a token the emulator issued.
Against real Azure, set ``Azure__SubscriptionId``, ``Azure__Location`` and
``Azure__CredentialSource`` (e.g. ``AzureCli``) instead.
"""

from apphost_sdk import DistributedApplication

builder = DistributedApplication.create_builder()

cache = builder.add_azure_managed_redis("cache")  # Balanced_B0, port 10000, Entra ID
legacy = builder.add_azure_redis("legacy")  # retiring product, for tenants that still have it

(
    builder.add_uvicorn_app("api", "api", "main:app")
    .with_http_health_check("/health")
    .with_reference(cache)
    .with_reference(legacy)
    .wait_for(cache)
    .wait_for(legacy)
)

builder.build().run()
