"""The call plane: wire messages both ways, rooms and presence, the push hub, ICE
servers, and ``Calls``, which relays signaling inside one consultation.

It reaches the workflow only through the Protocols in ``ports``, and clients
only through the ``Channel`` interface in ``hub`` (so it imports no aiohttp).
"""
