"""The appliance as Home Assistant's MQTT integration sees it: the retained discovery configs on
a real Mosquitto, from a real appliance process. A rename updates the same device (ids, entity
ids and topics from the stable node id), the configs an older version left under the name are
cleared once, the device links to the page, and its "Reconnect uplinks" button restarts the
uplinks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from argentic_edge.federation.identity import load_or_create_keys
from argentic_edge.homeassistant import entities
from argentic_edge.storage import federation_dir, homeassistant_state_path
from tests.support.appliance import Appliance, appliance_document
from tests.support.brokers import Mosquitto, mqtt_publish

LEGACY_NAME = "kitchen"


def retained(port: int, topic_filter: str, quiet: float = 1.0, timeout: float = 20) -> dict:
    """What the broker keeps under a filter, once nothing new came for ``quiet`` seconds."""
    found: dict[str, bytes] = {}
    last = [time.monotonic()]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-reader")
    client.on_connect = lambda c, *_: c.subscribe(topic_filter)

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            found[message.topic] = message.payload
            last[0] = time.monotonic()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while time.monotonic() - last[0] < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return found


def configs(port: int, count: int) -> dict[str, dict]:
    """The retained discovery configs, once ``count`` of them are there."""
    deadline = time.monotonic() + 20
    while True:
        found = retained(port, "homeassistant/#", quiet=0.5)
        if len(found) >= count or time.monotonic() > deadline:
            return {topic: json.loads(payload) for topic, payload in found.items()}


def ha_appliance(tmp_path: Path, broker: Mosquitto, name: str) -> Appliance:
    document = appliance_document(
        tmp_path / "data",
        node_name=name,
        bridge={
            "enabled": True,
            "ha_discovery": True,
            "mqtt": {
                "broker_address": "127.0.0.1",
                "port": broker.port,
                "connect_retry_delay": 0.2,
            },
        },
    )
    return Appliance(tmp_path / "edge", document)


def test_a_rename_updates_the_same_device_and_old_configs_go_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # What an older version retained under the name: a device Home Assistant would keep.
    legacy = {
        topic: b'{"name": "old"}' for topic, _p, _r in entities.legacy_removal_messages(LEGACY_NAME)
    }
    mqtt_publish(mosquitto.port, legacy)
    assert set(retained(mosquitto.port, "#")) == set(legacy)

    appliance = ha_appliance(tmp_path, mosquitto, LEGACY_NAME)
    with appliance.start():
        appliance.wait_for_output("announced the appliance to Home Assistant")
        before = configs(mosquitto.port, 7)
        assert appliance.status()["homeassistant"]["announcements"] >= 1
    node_id = load_or_create_keys(federation_dir(tmp_path / "data")).node_id
    assert len(before) == 7 and not set(before) & set(legacy), "the name-based configs are gone"
    assert all(f"/{node_id}/" in topic for topic in before)
    assert {c["device"]["name"] for c in before.values()} == {LEGACY_NAME}
    assert {c["device"]["identifiers"][0] for c in before.values()} == {f"argentic_edge_{node_id}"}
    assert {c["default_entity_id"] for c in before.values()} >= {
        f"sensor.argentic_edge_{node_id[:8]}_bus_rate",
        f"button.argentic_edge_{node_id[:8]}_reconnect_uplinks",
        f"binary_sensor.argentic_edge_{node_id[:8]}_uplink_mqtt",
    }
    assert all(node_id in c.get("state_topic", c.get("command_topic")) for c in before.values())
    state = json.loads(
        retained(mosquitto.port, f"argentic/edge/{node_id}/state", quiet=0.5)[
            f"argentic/edge/{node_id}/state"
        ]
    )
    assert state["uplinks"] == {"mqtt": "ON"}  # the uplink Home Assistant hears it through

    appliance.document["node_name"] = "pantry"
    with appliance.start():
        appliance.wait_for_output("cleared the name-based discovery configs of 'pantry'")
        deadline = time.monotonic() + 20
        while True:
            after = configs(mosquitto.port, 7)
            if {c["device"]["name"] for c in after.values()} == {"pantry"}:
                break
            assert time.monotonic() < deadline, after
    assert set(after) == set(before), "the same topics: Home Assistant updates the device"
    for topic, config in after.items():
        renamed = {
            **before[topic],
            "device": {**before[topic]["device"], "name": "pantry"},
            # the bridge's presence topic (its last will), which carries the name
            "availability_topic": "argentic/edge/pantry/status",
        }
        assert config == renamed, "nothing but the display name changed"

    with appliance.start():  # a third start under a name already cleared: nothing to clear
        appliance.wait_for_output("announced the appliance to Home Assistant")
    log = appliance.output()
    assert log.count("cleared the name-based discovery configs of") == 2
    noted = json.loads(homeassistant_state_path(tmp_path / "data").read_text())
    assert noted == {"legacy_cleared": ["kitchen", "pantry"], "uplinks": ["mqtt"]}


def test_the_device_links_to_the_page_and_its_button_reconnects_the_uplinks(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    appliance = ha_appliance(tmp_path, mosquitto, "hall")
    with appliance.start():
        appliance.wait_for_output("announced the appliance to Home Assistant")
        found = configs(mosquitto.port, 7)
        urls = {c["device"].get("configuration_url") for c in found.values()}
        assert urls == {f"http://127.0.0.1:{appliance.web_port}/"}  # certificates are off here
        button = next(c for topic, c in found.items() if topic.startswith("homeassistant/button/"))
        assert button["payload_press"] == "reconnect_uplinks"
        presence: list[bytes] = []
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-presence")
        watcher.on_message = lambda _c, _u, message: presence.append(message.payload)
        watcher.connect("127.0.0.1", mosquitto.port)
        watcher.subscribe(button["availability_topic"], qos=1)
        watcher.loop_start()
        try:
            mqtt_publish(
                mosquitto.port, {button["command_topic"]: b"reconnect_uplinks"}, retain=False
            )
            appliance.wait_for_output("restarted: uplink:mqtt, homeassistant")
            deadline = time.monotonic() + 20
            while presence[-2:] != [b"offline", b"online"]:
                assert time.monotonic() < deadline, (presence, appliance.log_tail())
                time.sleep(0.05)
        finally:
            watcher.loop_stop()
            watcher.disconnect()
        assert presence[0] == b"online", "the retained presence, then the reconnection"
        assert appliance.status()["bridge"]["state"] == "connected"
        appliance.wait_for_output("announced the appliance to Home Assistant (prefix")

        mqtt_publish(mosquitto.port, {button["command_topic"]: b"something else"}, retain=False)
        appliance.wait_for_output("ignoring the command b'something else'")
    assert appliance.output().count("'Reconnect uplinks' pressed") == 1


def test_one_connectivity_sensor_per_uplink_and_a_removed_one_goes(
    tmp_path: Path, mosquitto: Mosquitto, mosquitto_factory: Any
) -> None:
    """Two uplinks (home, through which Home Assistant hears, and cloud): a sensor each, keyed
    by the uplink's name; dropping cloud from the configuration clears its sensor's config."""
    cloud = mosquitto_factory(name="cloud")
    appliance = ha_appliance(tmp_path, mosquitto, "hall")
    del appliance.document["bridge"]["mqtt"]
    appliance.document["uplinks"] = [
        {"name": name, "protocol": "mqtt", "broker_address": "127.0.0.1", "port": broker.port,
         "connect_retry_delay": 0.2}
        for name, broker in (("home", mosquitto), ("cloud", cloud))
    ]  # fmt: skip
    with appliance.start():
        appliance.wait_for_output("announced the appliance to Home Assistant")
        found = configs(mosquitto.port, 8)
        sensors = {
            c["name"]: c for t, c in found.items() if "/uplink_" in t and t.endswith("/config")
        }
        assert set(sensors) == {"Uplink home", "Uplink cloud"}
        assert sensors["Uplink cloud"]["value_template"] == '{{ value_json.uplinks["cloud"] }}'
        assert sensors["Uplink cloud"]["device_class"] == "connectivity"
        node_id = load_or_create_keys(federation_dir(tmp_path / "data")).node_id
        topic = f"argentic/edge/{node_id}/state"
        deadline = time.monotonic() + 40  # the state is published every 30 s and on connection
        while True:
            state = json.loads(retained(mosquitto.port, topic, quiet=0.5).get(topic, b"{}"))
            if state.get("uplinks") == {"home": "ON", "cloud": "ON"}:
                break
            assert time.monotonic() < deadline, state
    assert retained(cloud.port, "homeassistant/#", quiet=0.5) == {}, "announced on home only"

    appliance.document["uplinks"] = appliance.document["uplinks"][:1]
    with appliance.start():
        appliance.wait_for_output("removed the sensors of the uplinks cloud")
        names = {c["name"] for c in configs(mosquitto.port, 7).values()}
    assert "Uplink home" in names and "Uplink cloud" not in names
