"""The kernel: what every service shares and nothing more.

Contracts at the edges (pydantic), settings, the exception tree, the names of every Redis key and
Kafka topic, the one backoff, signed tokens. It imports only the pure cores below it; nothing in
it starts a server or talks to one.
"""
