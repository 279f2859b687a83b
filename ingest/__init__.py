"""MQTT ingest: validate what devices and phones publish, and pass it on to Kafka."""
