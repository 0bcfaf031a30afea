"""Resource types built on the app model, one module each (Redis, Azure Cache for Redis, the
Redis tools). Each only adds annotations; a third-party integration is written the same way
(see the README's "Writing an integration")."""
