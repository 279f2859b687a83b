"""Storage adapters: the only modules that know asyncpg and redis."""
