"""A Mosquitto of the module's own, started as ``careknot up`` starts one (anonymous clients
refused, the dynamic security plugin on, default deny): the ``broker`` fixture, an MQTT 5
client that keeps the reason code of each PUBACK (:class:`Reasoned`), and a device's access."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from adapters.mqtt.access import BrokerAccess, access_of
from careknot.servers.embedded import Launcher, Started, dynsec_plugin
from kernel.settings import Settings

STARTS_WITHIN_S = 30.0
NOT_AUTHORISED = 135
"""The MQTT 5 reason code of a PUBACK or SUBACK refused: not authorised."""


class Reasoned(aiomqtt.Client):
    """An MQTT 5 client that keeps the reason code of each PUBACK it gets."""

    def __init__(self, access: BrokerAccess, **kwargs: Any) -> None:
        self.pubacks: list[ReasonCode] = []
        super().__init__(
            access.host,
            access.port,
            protocol=aiomqtt.ProtocolVersion.V5,
            **access.client_options(),
            **kwargs,
        )

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self.pubacks.append(reason_code)
        super()._on_publish(client, userdata, mid, reason_code, properties)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """A Mosquitto of the module's own on a free port, with identities, as ``careknot up``
    starts one."""
    if dynsec_plugin() is None:
        pytest.skip("needs Mosquitto's dynamic security plugin")
    launcher = Launcher(
        tmp_path_factory.mktemp("mqtt"), use_installed=True, timeout=STARTS_WITHIN_S
    )
    try:
        started = launcher.mqtt(identity=True)
        if started.how != "mosquitto":
            pytest.skip("needs Mosquitto on PATH")
        yield started
    finally:
        launcher.close()


def as_device(settings: Settings, device: str, password: str) -> BrokerAccess:
    return access_of(settings).as_user(device, password)
