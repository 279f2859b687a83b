"""The adapters: the only code that imports redis, asyncpg, aiokafka, aiomqtt or paho.

``storage/`` (Redis and Postgres), ``kafka`` (topics and the producer), ``mqtt/`` (the wire
format and the read-ahead client), ``metrics`` (Prometheus exposition), ``notify`` (alarms told
outside through Apprise). Each maps its library's errors to :mod:`kernel.errors` at this edge.
"""
