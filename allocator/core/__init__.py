"""The allocator's decision core: synchronous, pure, deterministic. No IO, no clock, no
randomness: time comes from the commands, codes from a keyed PRF. The shell (allocator/
shell) feeds it records and stores the effects it returns (effects.py is the seam); the
analysts' tools (allocator/tools) run it over a whole log. An import-linter contract in
pyproject.toml keeps asyncio, asyncpg, aiokafka, aiohttp, prometheus_client and runtime
out of it."""
