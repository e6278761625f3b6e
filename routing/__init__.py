"""Deciding where an OCPI request goes and getting it there (resolver, forwarder, broadcast, outbox delivery).

Not built yet: see the README's status table. It may import the lower layers of ``hub`` (wire, platform,
parties) and never ``clearing``.
"""
