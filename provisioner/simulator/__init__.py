"""The SMS provider simulator: a development and test tool, not a provider.

It speaks the three wire formats (SMS-Activate protocol, SMS-MAN, OnlineSim) on one loopback
server, keeps a ledger of what was bought, charged and refunded, and injects faults. It ships in
the package so `provisioner sim` and the compose `simulator` service can run it; production
deployments simply never start it.
"""

from provisioner.simulator.server import Simulator

__all__ = ["Simulator"]
