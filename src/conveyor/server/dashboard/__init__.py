"""The web dashboard (DESIGN A4 ``/dashboard``): server-rendered pages over the gateway's answer
functions (``conveyor.server.gateway.answers``); ``routes`` is mounted beside the gateway's
route table by ``conveyor.server.app``.
"""
