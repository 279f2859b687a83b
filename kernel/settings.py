"""Typed settings, read from ``CAREKNOT_*`` environment variables.

Defaults work on one machine with the development servers; every URL can be pointed at
production servers (see README, "Production").
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatch.offers import DEFAULT_WINDOW_S, SEVERITIES, WINDOWS_S
from kernel.keys import Keys

DEV_TOKEN_SECRET = "careknot-dev-secret-change-me"


class Settings(BaseSettings):
    """Everything a CareKnot process needs to know about its surroundings."""

    model_config = SettingsConfigDict(env_prefix="CAREKNOT_", extra="ignore")

    namespace: str = Field(
        default="ck",
        pattern=r"^[a-z][a-z0-9_]{0,30}$",
        description="Prefix of Kafka topics and Redis keys, and the Postgres schema.",
    )
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_share_group: str = Field(default="", description="default: careknot-{namespace}")
    mqtt_shared_subscriptions: bool = True  # False on the embedded amqtt broker (MQTT 3.1.1)
    mqtt_username: str = Field(default="", description="the services' MQTT username; '': none")
    mqtt_password: str = Field(default="", description="its password (mqtt_password_file wins)")
    mqtt_password_file: str = Field(
        default="", description="a file whose first line is the password (careknot up writes one)"
    )
    mqtt_tls: bool = Field(default=False, description="TLS to the broker (also: mqtts:// URL)")
    mqtt_tls_ca_file: str = Field(default="", description="CA bundle; '': the system's")
    mqtt_tls_cert_file: str = Field(default="", description="client certificate, optional")
    mqtt_tls_key_file: str = Field(default="", description="its private key, optional")
    mqtt_admin_username: str = Field(
        default="careknot-admin", description="the broker's dynamic-security admin"
    )
    mqtt_admin_password_file: str = Field(
        default="",
        description="its password's file, where careknot up started the broker: devices and"
        " phones are then given credentials of their own as they are registered; '': an"
        " external broker, whose credentials are provisioned elsewhere",
    )
    ingest_client_id: str = Field(
        default="",
        max_length=100,
        description="the MQTT client id of this ingest process's persistent sessions, one a"
        " connection (-positions, -emergencies appended); each ingest process its own, the same"
        " across its restarts; default: careknot-{namespace}-ingest",
    )
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = 4
    kafka_fetch_max_wait_ms: int = Field(
        default=25, ge=1, description="the dispatch worker's fetch wait: events wait at most this"
    )
    fixes_fetch_max_wait_ms: int = Field(
        default=50, ge=1, description="the fixes worker's fetch wait: fixes flow, or may wait"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/test"
    postgres_owner_dsn: str = Field(
        default="",
        description="the schema's owner, for migrations (careknot migrate, careknot up); empty:"
        " postgres_dsn. Set apart, the services' postgres_dsn names a role that owns nothing: it"
        " is granted what the services do, and never UPDATE, DELETE or TRUNCATE on the event"
        " and access logs, nor the right to change a table or drop a trigger",
    )
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8765
    api_host: str = Field(default="127.0.0.1", description="where the HTTP API listens")
    api_port: int = Field(default=8780, ge=0, le=65535, description="the HTTP API's port")
    api_metrics_port: int = Field(
        default=9471, ge=0, le=65535, description="the HTTP API's /metrics and health; 0: none"
    )
    gateway_admin_host: str = Field(
        default="127.0.0.1", description="where the gateway's /metrics, /healthz and /readyz are"
    )
    gateway_admin_port: int = Field(
        default=9470, ge=0, le=65535, description="the gateway's /metrics and health; 0: none"
    )
    gateway_origins: str = Field(
        default="",
        description="web pages (origins, comma-separated) whose scripts may open a WebSocket"
        " and call the HTTP API (CORS); empty: the gateway's own pages on localhost and"
        " gateway_host. Clients that send no Origin (phones, devices) are not browsers and are"
        " let through",
    )
    public_api_url: str = Field(
        default="",
        description="the HTTP API's base URL as the web pages reach it (behind a proxy:"
        " https://api.example.org); empty: http://api_host:api_port, the page's own host when"
        " api_host is every interface",
    )
    gateway_tls_cert: str = Field(default="", description="PEM certificate: the gateway speaks TLS")
    gateway_tls_key: str = Field(default="", description="its private key (PEM)")
    gateway_compression: bool = Field(
        default=True,
        description="permessage-deflate on the WebSocket when a client offers it: smaller frames"
        " on the wire, and a compressor and decompressor kept for each connection (see"
        " docs/benchmarks.md, Gateway, for what that costs)",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="where the services' metrics and health are served"
    )
    gateway_frame_rate: float = Field(
        default=5.0,
        gt=0,
        description="frames a second a WebSocket client may send of each kind (answers,"
        " commands, the rest) before it is told rate_limited",
    )
    gateway_frame_burst: int = Field(
        default=20, ge=1, description="frames of each kind a client may send at once"
    )
    console_tile_url: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="the web pages' map tiles, a Leaflet URL template ({z}/{x}/{y}, {s});"
        " empty: the drawn grid alone. Tiles that do not load leave the grid showing",
    )
    console_tile_attribution: str = Field(
        default="&copy; OpenStreetMap contributors",
        description="the tiles' attribution, shown on the map (HTML)",
    )
    token_secret: str = Field(
        default=DEV_TOKEN_SECRET,
        description="the one key when neither token_keys nor the keys file gives any; the"
        " default is public, and only a process in development may use it",
    )
    token_keys: str = Field(
        default="",
        description="kid:secret[:retired_at] entries, newest first: the first not retired signs",
    )
    token_keys_file: str = Field(
        default=".careknot/token-keys",
        description="where the keys are when token_keys is empty (careknot up writes one)",
    )
    token_ttl_s: int = Field(default=900, gt=0, le=86_400, description="access tokens' lifetime")
    token_session_max_s: int = Field(
        default=43_200,
        gt=0,
        le=7 * 86_400,
        description="how long after signing in a token may still be renewed (its session's"
        " most): a renewed token expires no later",
    )
    development: bool = Field(
        default=False, description="a development machine: the public development key is taken"
    )
    worker_datadir: str = ".careknot/worker"
    # patients' data sealed, and what is kept how long
    patient_kek_file: str = Field(
        default=".careknot/patient-kek",
        description="the development key-encryption key of patients' data keys: 32 bytes,"
        " owner-only, made when missing (production: a KMS behind kernel.sealing.KeyWrapper)",
    )
    fix_history_keep_days: float = Field(
        default=90.0, gt=0, description="caregivers' fixes older than this are deleted"
    )
    deadletter_keep_days: float = Field(
        default=14.0, gt=0, description="the dead-letter topic's retention.ms, set at creation"
    )
    retention_every_s: float = Field(
        default=3600.0, gt=0, description="how often the fixes worker applies the retention"
    )
    # dispatch
    offer_window_s: float = Field(
        default=DEFAULT_WINDOW_S, gt=0, description="an offer's window where its severity has none"
    )
    offer_window_by_severity: dict[int, float] = Field(
        default_factory=lambda: dict(WINDOWS_S),
        description='severity (1 most urgent) -> seconds, JSON: {"1": 20, "2": 45}',
    )
    offer_wave_size: int = 1
    max_waves: int = 3
    search_area_rings: int = Field(default=3, ge=1, le=10, description="~6 km each")
    position_stale_s: float = 120.0
    # alarms
    alarm_notify_url: str = Field(
        default="",
        description="Apprise URL(s), several separated by commas or spaces, told at"
        " alarm_notify_rung of every agency's alarms beside the agency's own contacts"
        " (json://host/path POSTs JSON)",
    )
    alarm_notify_rung: Literal["on_call", "external"] = Field(
        default="external", description="the rung of the ladders alarm_notify_url is told at"
    )
    # visits
    visit_dwell_in_s: float = Field(default=60.0, ge=0, description="inside this long: arrived")
    visit_dwell_out_s: float = Field(default=120.0, ge=0, description="outside this long: left")
    # medication
    medication_schedules_read_s: float = Field(
        default=30.0,
        gt=0,
        description="schedules are read again this often: a changed schedule is watched within it",
    )
    # routines
    routine_tick_s: float = Field(
        default=60.0,
        gt=0,
        description="every home is scored this often, whether or not anything happened",
    )
    routine_incident_after_s: float = Field(
        default=1200.0,
        ge=0,
        description="unusual inactivity standing this long opens an incident for dispatch",
    )
    routine_retrain_s: float = Field(
        default=10.0,
        gt=0,
        description="seconds a tick may spend retraining the homes whose day began (one home"
        " at least); the rest wait for the next tick",
    )
    routine_homes_read_s: float = Field(
        default=300.0, gt=0, description="the homes to watch are read again this often"
    )
    # device health
    device_missed_beats: int = Field(
        default=3, ge=1, description="heartbeats a device misses in a row before it is offline"
    )
    device_battery_minor_pct: int = Field(default=20, ge=0, le=100, description="low: minor")
    device_battery_major_pct: int = Field(default=10, ge=0, le=100, description="low: major")
    device_flap_drops: int = Field(
        default=3, ge=2, description="drops within the flap window that make a device flapping"
    )
    device_flap_window_s: float = Field(default=600.0, gt=0)
    device_decommissions_read_s: float = Field(
        default=60.0,
        gt=0,
        description="devices decommissioned are let go this often: their health alarms cleared",
    )
    device_settle_s: float = Field(
        default=600.0, gt=0, description="a flapping device holding one state this long settles"
    )
    # ingest limits
    max_payload_bytes: int = 4096
    max_clock_skew_s: float = 300.0
    max_fix_ahead_s: float = Field(
        default=30.0,
        gt=0,
        description="a caregiver's fix stamped further ahead of the receiver's clock is refused"
        " (from_future), at ingest and in the fixes worker: it would stand as her newest",
    )
    ingest_metrics_port: int = Field(default=9464, ge=0, le=65535, description="0: no metrics")
    worker_metrics_port: int = Field(default=9465, ge=0, le=65535, description="0: no metrics")
    dispatch_metrics_port: int = Field(
        default=9467, ge=0, le=65535, description="the dispatch worker's; 0: no metrics"
    )
    devices_metrics_port: int = Field(
        default=9469, ge=0, le=65535, description="the devices worker's; 0: no metrics"
    )
    emergency_ingest_metrics_port: int = Field(
        default=9466, ge=0, le=65535, description="an ingest of device events alone; 0: none"
    )
    telemetry_ingest_metrics_port: int = Field(
        default=9468, ge=0, le=65535, description="an ingest of telemetry alone; 0: none"
    )
    flood_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="CPU priority the floods' processes (the ingest of positions and of"
        " telemetry, the fixes and devices workers) give up (os.nice), so the emergencies' go"
        " first when the CPU is short",
    )

    @field_validator("offer_window_by_severity", mode="before")
    @classmethod
    def _json_text(cls, value: object) -> object:
        """JSON text as the environment gives it, also where a process passes its settings on
        as ``CAREKNOT_*`` values (``careknot up``'s state file)."""
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("offer_window_by_severity")
    @classmethod
    def _known_severities(cls, windows: dict[int, float]) -> dict[int, float]:
        for severity, window_s in windows.items():
            if severity not in SEVERITIES or window_s <= 0:
                raise ValueError(f"severity {severity}: {window_s} s (severities {SEVERITIES})")
        return windows

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        return urlsplit(self.mqtt_url).port or 1883

    @property
    def keys(self) -> Keys:
        """The namespace's Redis keys and Kafka topics."""
        return _keys_of(self.namespace)


@lru_cache(maxsize=64)
def _keys_of(namespace: str) -> Keys:
    return Keys(namespace)
