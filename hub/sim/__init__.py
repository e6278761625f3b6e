"""A simulated roaming world for ``ocpi-hub demo``: CPO and eMSP platforms as real OCPI 2.2.1 servers on loopback.

Each platform is its own small aiohttp app (versions, version details, credentials and the modules it needs); it
registers with the hub through the real credentials handshake and then talks to other platforms only through the
hub. `hub.sim.world` runs the hub and the platforms in one process; `hub.sim.pricing` is the simple tariff the CPOs
use. A composition-level tool like the CLI: it may import the hub's lower layers and clearing.
"""
