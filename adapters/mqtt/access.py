"""How a process reaches the broker: where, as whom, over what.

:func:`access_of` reads it from the settings: ``mqtt_url``, ``mqtt_username`` with
``mqtt_password`` or ``mqtt_password_file`` (its first line; the file wins where both are set),
and TLS when ``mqtt_tls`` is on or the URL's scheme is ``mqtts``: the CA file
(``mqtt_tls_ca_file``, else the system's), a client certificate and key where given.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from kernel.errors import BrokerUnavailable
from kernel.settings import Settings


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __repr__(self) -> str:  # never the password
        who = self.username or "anonymous"
        return f"BrokerAccess({who}@{self.where}{', tls' if self.tls else ''})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def as_user(self, username: str, password: str) -> BrokerAccess:
        """The same broker, as another client."""
        return replace(self, username=username, password=password)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file or None)
        return context

    def client_options(self) -> dict[str, Any]:
        """``aiomqtt.Client``'s keyword arguments for the credentials and TLS."""
        options: dict[str, Any] = {"username": self.username, "password": self.password}
        context = self.ssl_context()
        if context is not None:
            options["tls_context"] = context
        return options

    def client(self, **kwargs: Any) -> aiomqtt.Client:
        """An ``aiomqtt.Client`` to this broker as this client (``kwargs`` passed on)."""
        return aiomqtt.Client(self.host, self.port, **self.client_options(), **kwargs)


def read_password(path: str) -> str:
    """The first line of a password file; :class:`BrokerUnavailable` when it cannot be read."""
    try:
        return Path(path).read_text().splitlines()[0] if Path(path).stat().st_size else ""
    except (OSError, IndexError) as exc:
        raise BrokerUnavailable(f"mqtt: password file {path}: {exc}") from exc


def access_of(settings: Settings) -> BrokerAccess:
    """The broker and the credentials ``settings`` name."""
    scheme = urlsplit(settings.mqtt_url).scheme
    tls = settings.mqtt_tls or scheme in ("mqtts", "ssl")
    password: str | None = settings.mqtt_password or None
    if settings.mqtt_password_file:
        password = read_password(settings.mqtt_password_file)
    return BrokerAccess(
        settings.mqtt_host,
        urlsplit(settings.mqtt_url).port or (8883 if tls else 1883),
        username=settings.mqtt_username or None,
        password=password,
        tls=tls,
        ca_file=settings.mqtt_tls_ca_file or None,
        cert_file=settings.mqtt_tls_cert_file or None,
        key_file=settings.mqtt_tls_key_file or None,
    )


def credentials(settings: Settings) -> tuple[str | None, str | None]:
    """The username and password ``settings`` name (benchmarks' loads, which write MQTT by
    hand)."""
    access = access_of(settings)
    return access.username, access.password


def admin_access(settings: Settings) -> BrokerAccess | None:
    """The dynamic-security admin's access, where the settings name its password file (a
    broker ``careknot up`` started); None otherwise."""
    if not settings.mqtt_admin_password_file:
        return None
    password = read_password(settings.mqtt_admin_password_file)
    return access_of(settings).as_user(settings.mqtt_admin_username, password)
