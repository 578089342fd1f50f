"""``argentic-edge ha-remove``: take the appliance's device out of Home Assistant.

The step before uninstalling (the status page has the same action as a button while the
appliance runs). It clears the retained discovery configs over its own short MQTT connection,
with the bridge's broker settings — in the add-on (``--addon``), the Supervisor's broker — so it
works whether or not the appliance is running, and never takes over the bridge's session.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import cast

from argentic_edge.config import EdgeConfig, MqttConfig, find_config_file, load_config
from argentic_edge.storage import federation_dir

log = logging.getLogger(__name__)

ACK_TIMEOUT = 10.0
SERVICE_TIMEOUT = 30.0


class OwnConnection:
    """A one-off MQTT 3.1.1 connection with the face ``remove_from_home_assistant`` expects,
    to the broker of the first MQTT uplink (the one Home Assistant discovery goes through)."""

    def __init__(self, config: EdgeConfig, settings: MqttConfig) -> None:
        from argentic_edge.bridge.link import LinkCallbacks
        from argentic_edge.bridge.mqtt import MqttLink

        self._acks: dict[int, asyncio.Future[None]] = {}
        self._next = 0
        self.link = MqttLink(
            settings,
            LinkCallbacks(
                on_message=lambda _topic, _payload, _ack: None,
                on_settled=self._settled,
                on_lost=self._lost,
            ),
            client_id=f"{config.mqtt_client_id}-remove",
            mqtt5=False,
        )

    async def __aenter__(self) -> OwnConnection:
        await self.link.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.close()

    def _settled(self, token: object, problem: str | None) -> None:
        from argentic_edge.bridge.mqtt import BridgeError

        future = self._acks.pop(cast(int, token), None)
        if future is not None and not future.done():
            if problem is None:
                future.set_result(None)
            else:
                future.set_exception(BridgeError(f"the broker did not take it: {problem}"))

    def _lost(self, reason: str) -> None:
        from argentic_edge.bridge.mqtt import BridgeError

        for future in self._acks.values():
            if not future.done():
                future.set_exception(BridgeError(f"the broker closed the connection: {reason}"))

    async def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None:
        from argentic_edge.bridge.link import Publication

        future = asyncio.get_running_loop().create_future()
        self._next += 1
        self._acks[self._next] = future
        self.link.publish(Publication(topic, payload, 1, True, self._next))
        await asyncio.wait_for(future, ACK_TIMEOUT)


async def _addon_config() -> EdgeConfig:
    """The add-on's configuration with the Supervisor's broker, as ``run --addon`` builds it."""
    from argentic_edge.homeassistant.options import AddonError
    from argentic_edge.homeassistant.runtime import AddonPaths, AddonRuntime
    from argentic_edge.homeassistant.supervisor import SupervisorClient

    async with SupervisorClient() as supervisor:
        runtime = AddonRuntime(AddonPaths.from_env(), supervisor)
        config = await runtime.load()
        if runtime.needs_broker(config):
            runtime.mqtt_service = await supervisor.wait_for_mqtt_service(timeout=SERVICE_TIMEOUT)
            if runtime.mqtt_service is None:
                raise AddonError("the Supervisor provides no MQTT broker: nothing to remove from")
            config = runtime.current()
        return config


async def remove(config: EdgeConfig) -> int:
    from argentic_edge.bridge.mqtt import BridgeError
    from argentic_edge.homeassistant.discovery import remove_from_home_assistant

    first = config.first_mqtt_uplink
    settings = first.link if first is not None else config.bridge.mqtt
    if not isinstance(settings, MqttConfig) or settings.broker_address is None:
        raise BridgeError("bridge.mqtt.broker_address is not set: no broker to remove from")
    async with OwnConnection(config, settings) as connection:
        return await remove_from_home_assistant(
            connection,
            _stored_node_id(config),
            config.node_name,
            config.bridge.ha_discovery_prefix,
            tuple(uplink.name for uplink in config.uplinks),
        )


def _stored_node_id(config: EdgeConfig) -> str | None:
    """The node id the appliance announced itself under; None if it never made one (then only
    the name-based configs of older versions can be there)."""
    from argentic_edge.federation.identity import KEY_FILE, load_or_create_keys

    directory = federation_dir(config.data_path)
    return load_or_create_keys(directory).node_id if (directory / KEY_FILE).exists() else None


def cmd_ha_remove(args: argparse.Namespace) -> int:
    from argentic_edge.bridge.mqtt import BridgeError

    async def main() -> int:
        config = await _addon_config() if args.addon else load_config(find_config_file(args.config))
        return await remove(config)

    try:
        removed = asyncio.run(main())
    except (BridgeError, TimeoutError) as exc:
        sys.stderr.write(f"argentic-edge: {exc or 'the broker did not acknowledge in time'}\n")
        return 1
    sys.stdout.write(f"removed from Home Assistant: {removed} retained topics cleared\n")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ha-remove", help="remove the appliance's device from Home Assistant (before uninstalling)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", "-c", help="the appliance's configuration file")
    source.add_argument(
        "--addon", action="store_true", help="as the add-on: options and the Supervisor's broker"
    )
    parser.set_defaults(func=cmd_ha_remove)
