"""Qinglian edge agent: the hall's Raspberry Pi between the devices' MQTT
broker and the county server. Zero-loss ingest (commit, then ack), a device
registry, broker security, status for the hall. See README.md here."""
