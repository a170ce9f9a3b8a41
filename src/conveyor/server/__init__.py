"""The servers: gateway, agent, store, dashboard and callback delivery, and ``run`` that
assembles them into the ``serve``, ``server`` and ``worker`` processes."""
