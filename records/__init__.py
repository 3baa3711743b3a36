"""The system of record: schema, migrations, storage, audit chain.

Imports none of ``web``, ``signaling`` or ``media`` and neither aiohttp nor aiortc.
"""
