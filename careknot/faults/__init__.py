"""Fault scenarios on real servers: the whole system at load, one fault each (a server or a
service killed with SIGKILL and started again, a network that adds latency, resets or drops
traffic), counting what was published against what reached Kafka, Postgres, Redis and the
WebSocket. Used by ``careknot bench faults`` (full) and the journey tests (short).

Modules: ``proxy`` (the misbehaving TCP proxy), ``servers`` (servers we can kill and start
again), ``load`` (phones, fall detectors, people on the WebSocket, a tap on Kafka),
``scenarios`` (what each breaks; one run and its counts).
"""
