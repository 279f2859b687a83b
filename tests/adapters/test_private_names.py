"""The private names of libraries that CareKnot reaches into for speed are still there.

Each reach lives in one adapter module, with the library pinned in pyproject.toml; these tests
fail when an upgrade moves a name, before the reach silently stops working:

- :mod:`adapters.faust_transport` overrides faust's
  ``AIOKafkaConsumerThread._create_worker_consumer`` and sets aiokafka's
  ``AIOKafkaConsumer._fetch_max_wait_ms`` (how long a fetch waits for data);
- :mod:`adapters.mqtt.client` swaps paho's ``Client._sock`` for its read-ahead socket in
  aiomqtt's ``Client._on_socket_open`` hook (whose reader, watching the socket's file
  descriptor, drains the socket's ``pending()`` bytes: a full inbox stops and starts that
  watch, reading as it does), and acknowledges messages itself through aiomqtt's paho
  client, ``Client._client`` (paho's ``manual_ack_set`` and ``ack``).
"""

from __future__ import annotations

import inspect
import socket

import aiomqtt
import paho.mqtt.client as paho
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from paho.mqtt.enums import CallbackAPIVersion

from adapters.faust_transport import LowLatencyConsumerThread
from adapters.mqtt.client import BatchingClient


def test_faust_still_creates_its_worker_consumer_where_the_transport_overrides_it() -> None:
    assert "_create_worker_consumer" in vars(AIOKafkaConsumerThread)
    assert "_create_worker_consumer" in vars(LowLatencyConsumerThread)
    ours = inspect.signature(LowLatencyConsumerThread._create_worker_consumer)
    theirs = inspect.signature(AIOKafkaConsumerThread._create_worker_consumer)
    assert list(ours.parameters) == list(theirs.parameters)


async def test_the_consumer_still_hands_its_fetch_wait_to_the_fetcher() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started
    assert consumer._fetch_max_wait_ms == 500  # aiokafka's default, under the name we set
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)


def test_paho_hands_out_the_socket_the_client_holds() -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    sentinel = socket.socket()
    client._sock = sentinel
    try:
        assert client.socket() is sentinel
    finally:
        sentinel.close()
    assert "_on_socket_open" in vars(aiomqtt.Client)


async def test_aiomqtt_still_opens_its_paho_clients_sockets_through_the_hook() -> None:
    client = BatchingClient("127.0.0.1", 9)  # never connected
    assert isinstance(client._client, paho.Client)
    assert client._client.on_socket_open == client._on_socket_open
    hook = aiomqtt.Client._on_socket_open
    assert list(inspect.signature(hook).parameters) == ["self", "client", "userdata", "sock"]
    source = inspect.getsource(hook)
    assert "client._sock.pending()" in source  # drains the read-ahead
    assert "add_reader, sock.fileno()" in source  # a full inbox stops the reader by that fd
    assert "client.loop_read()" in source  # as the client's own reader does after a pause


def test_paho_still_lets_its_client_acknowledge_messages_once_handled() -> None:
    assert list(inspect.signature(paho.Client.manual_ack_set).parameters) == ["self", "on"]
    assert list(inspect.signature(paho.Client.ack).parameters) == ["self", "mid", "qos"]
