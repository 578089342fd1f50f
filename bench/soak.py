"""Soak: the appliance under a steady load for minutes; memory and descriptors must stay flat.

The appliance runs as users run it (``python -m argentic_edge run``, a child process) with the
bus and the bridge to a real Mosquitto. Agents publish on the bus and an MQTT client publishes on
the broker, each at ``--rate`` messages per second (QoS 1 routes both ways), for ``--minutes``.
Every few seconds the appliance's RSS, open file descriptors and threads are read from /proc.

The baseline of each row is the appliance's own value after the first minute (warm caches,
connections made); the ratio says how far the end of the run drifted from it. The slope is a
least-squares fit of RSS over the samples after the first minute. Not part of CI:
``python -m bench --only soak`` or ``python -m bench.soak --minutes 10``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import zmq

from bench.common import Outcome, ratio, suite_main
from tests.support.appliance import (
    Appliance,
    appliance_document,
    fd_count,
    rss_kib,
    thread_count,
)
from tests.support.brokers import Mosquitto

WARMUP = 60.0  # seconds before the baseline sample (shorter in quick runs)


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss_mib: float
    fds: int
    threads: int


@dataclass
class Traffic:
    """The load and what arrived, counted per direction."""

    sent: dict[str, int] = field(default_factory=lambda: {"bus": 0, "mqtt": 0})
    received: dict[str, int] = field(default_factory=lambda: {"bus": 0, "mqtt": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def got(self, side: str) -> None:
        with self.lock:
            self.received[side] += 1


def slope(samples: list[Sample]) -> float:
    """Least-squares RSS growth in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [s.at / 60 for s in samples]
    ys = [s.rss_mib for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def _bus_reader(endpoint: str, traffic: Traffic, stop: threading.Event) -> None:
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"agent/mqtt/")
    sub.setsockopt(zmq.RCVTIMEO, 200)
    sub.connect(endpoint)
    try:
        while not stop.is_set():
            try:
                sub.recv()
            except zmq.Again:
                continue
            traffic.got("bus")
    finally:
        sub.close()


def _load(
    appliance: Appliance,
    mqtt: paho.Client,
    rate: int,
    seconds: float,
    traffic: Traffic,
    samples: list[Sample],
    interval: float,
) -> None:
    """Publish both ways at ``rate`` per second in 10 ms ticks; sample /proc every interval."""
    context = zmq.Context.instance()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(appliance.bus_publish)
    time.sleep(0.5)  # the PUB's subscriptions arrive; the soak does not count what is lost here
    body = json.dumps({"type": "soak", "source": "bench", "data": "x" * 64}).encode()
    started = time.monotonic()
    next_sample = 0.0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            while traffic.sent["bus"] < due:
                seq = traffic.sent["bus"]
                pub.send(f"agent/bus/{seq % 100} ".encode() + body)
                mqtt.publish(f"agent/mqtt/{seq % 100}", body, qos=1)
                traffic.sent["bus"] = traffic.sent["mqtt"] = seq + 1
            if elapsed >= next_sample:
                pid = appliance.pid
                samples.append(
                    Sample(elapsed, rss_kib(pid) / 1024, fd_count(pid), thread_count(pid))
                )
                next_sample += interval
            time.sleep(0.01)
    finally:
        pub.close()


def measure(minutes: float, rate: int, interval: float, warmup: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="argentic-soak-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "broker").start()
        document = appliance_document(
            root / "data",
            bridge={
                "enabled": True,
                "ha_discovery": False,
                "mqtt": {
                    "broker_address": "127.0.0.1",
                    "port": broker.port,
                    "client_id": "soak-edge",
                    "clean_session": False,
                },
                "routes": [{"topic": "agent/#", "direction": "both", "qos": 1}],
            },
        )
        appliance = Appliance(root / "edge", document)
        traffic, samples, stop = Traffic(), [], threading.Event()
        mqtt = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="soak-client", protocol=paho.MQTTv311
        )
        mqtt.max_inflight_messages_set(0)
        mqtt.on_message = lambda *_: traffic.got("mqtt")
        reader = None
        try:
            appliance.start()
            appliance.wait_healthy()
            mqtt.connect("127.0.0.1", broker.port)
            mqtt.subscribe("agent/bus/#", qos=1)
            mqtt.loop_start()
            reader = threading.Thread(
                target=_bus_reader, daemon=True, args=(appliance.bus_subscribe, traffic, stop)
            )
            reader.start()
            _load(appliance, mqtt, rate, minutes * 60, traffic, samples, interval)
            time.sleep(2.0)  # what is in flight lands before the counts are read
            bridge = appliance.status()["bridge"]
        finally:
            stop.set()
            if reader is not None:
                reader.join(5)
            mqtt.loop_stop()
            appliance.stop()
            broker.stop()
    return {
        "samples": samples,
        "traffic": traffic,
        "bridge": bridge,
        "warmup": warmup,
        "minutes": minutes,
        "rate": rate,
    }


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    samples: list[Sample] = result["samples"]
    warm = [s for s in samples if s.at >= result["warmup"]] or samples[-1:]
    base, end = warm[0], samples[-1]
    traffic: Traffic = result["traffic"]
    label = f"soak {result['minutes']:g} min, {result['rate']} msg/s each way"

    def row(what: str, ours: float, baseline: float, unit: str) -> dict[str, Any]:
        return {
            "scenario": f"{label}: {what}",
            "ours": ours,
            "baseline": baseline,
            "ratio": ratio(ours, baseline),
            "unit": unit,
        }

    return [
        row("RSS at the end (baseline: after warm-up)", end.rss_mib, base.rss_mib, "MiB"),
        row("RSS max", max(s.rss_mib for s in samples), base.rss_mib, "MiB"),
        row("RSS slope after warm-up", slope(warm), 0.0, "MiB/min"),
        row("open fds at the end", end.fds, base.fds, "fds"),
        row("threads at the end", end.threads, base.threads, "threads"),
        row(
            "bus -> broker delivered (baseline: sent)",
            traffic.received["mqtt"],
            traffic.sent["bus"],
            "messages",
        ),
        row(
            "broker -> bus delivered (baseline: sent)",
            traffic.received["bus"],
            traffic.sent["mqtt"],
            "messages",
        ),
        row(
            "bridge drops",
            sum(
                sum(route[side]["dropped"].values())
                for route in result["bridge"]["routes"]
                for side in ("in", "out")
            ),
            0.0,
            "messages",
        ),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """For ``python -m bench --only soak``: one minute when quick, else ten."""
    if quick:
        return rows_of(measure(1.0, 500, 2.0, 20.0))
    return rows_of(measure(10.0, 500, 5.0, WARMUP))


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="minutes of load (default 10; --quick: 1)"
    )
    parser.add_argument("--rate", type=int, default=500, help="messages per second each way")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")


def alone(args: argparse.Namespace) -> Outcome:
    """Alone, the soak takes its length and load from the command line and keeps its samples
    in the JSON file beside the rows."""
    minutes = 1.0 if args.quick else args.minutes
    warmup = min(WARMUP, minutes * 60 / 3)
    result = measure(minutes, args.rate, min(args.interval, minutes * 60 / 10), warmup)
    rows = rows_of(result)
    return Outcome(
        rows, document={"rows": rows, "samples": [s.__dict__ for s in result["samples"]]}
    )


def main(argv: list[str] | None = None) -> int:
    return suite_main(
        run, "the appliance after warm-up", __doc__ or "", argv, options=options, measure=alone
    )


if __name__ == "__main__":
    raise SystemExit(main())
