"""The web dashboard (DESIGN A4 ``/dashboard``): server-rendered pages over the gateway's own
API handlers, mounted by the gateway's route table (``conveyor.server.dashboard.routes.mount``).
"""

from __future__ import annotations

# The gateway's route table imports ``conveyor.server.dashboard.routes``, which imports gateway
# handlers. Importing the gateway package first keeps that order one-way whichever of the two
# packages a program imports first.
import conveyor.server.gateway  # noqa: F401
