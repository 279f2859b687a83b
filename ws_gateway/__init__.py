"""The WebSocket gateway: authenticates clients, scopes each to one outbox recipient, relays
Redis pub/sub to them, forwards caregivers' answers to Kafka and serves the web console.

Outbox messages carry the recipient's ``seq``; the control frames ``hello``, ``ack``,
``error`` and ``pong`` carry no ``seq``. See :mod:`ws_gateway.server` for the process,
:mod:`ws_gateway.conversation` for one client, :mod:`ws_gateway.web` for plain HTTP and
:mod:`ws_gateway.session` for the pure decisions.
"""
