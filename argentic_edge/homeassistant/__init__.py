"""Home Assistant: add-on options, the Supervisor API, MQTT discovery, the add-on runtime."""
