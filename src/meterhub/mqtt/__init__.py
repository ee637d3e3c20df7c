"""MQTT: each channel's newest reading published as it is stored, and Home Assistant's MQTT
discovery, so meterhub's devices appear in Home Assistant without glue scripts."""
