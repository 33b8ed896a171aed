"""The flow-log detectors and the mining-pool ports, named once: the settings offer them, and the
scanner reads them from here without importing the settings module (a scan starts faster)."""

from __future__ import annotations

DETECTORS = (
    "threat-list",
    "mining-pool",
    "admin-from-internet",
    "port-scan",
    "address-sweep",
    "forbidden-destination",
    "egress-volume",
)
# Stratum ports of common mining pools (and their TLS variants).
MINING_PORTS = (3333, 4444, 5555, 5588, 7777, 8888, 9999, 14433, 14444, 45560, 45700)
