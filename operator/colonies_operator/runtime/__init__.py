"""The per-executor runtime: plain asyncio, no kopf. Capacity, the assign loop, one
supervisor task per process, the shared Job/Pod watch, log shipping and adoption."""
