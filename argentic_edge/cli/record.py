"""``argentic-edge record FILTER -o FILE``: bus traffic matching an MQTT-style filter, written as
the recording format's JSON lines (inspector/recording.py) with the time each message was seen,
until Ctrl-C, SIGTERM, ``--count`` messages or ``--duration`` seconds."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import zmq

from argentic_edge.cli.pubsub import bus_command, bus_config, bus_endpoint
from argentic_edge.client.bus import Subscriber
from argentic_edge.inspector.recording import line
from argentic_edge.topics import TopicError, TopicFilter

POLL = 0.2  # seconds between checks of the deadline and the stop signal


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    summary = "record bus traffic to a JSON lines file"
    bus_command(subparsers, "record", summary, cmd_record, _arguments, backend=True)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("filter", help="MQTT-style filter, e.g. agent/#, #")
    parser.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    parser.add_argument("-C", "--count", type=int, default=0, help="stop after COUNT messages")
    parser.add_argument("--duration", type=float, default=0, help="stop after SECONDS")


def _stop_flag() -> list[bool]:
    stopped = [False]

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped[0] = True

    signal.signal(signal.SIGTERM, stop)
    return stopped


def cmd_record(args: argparse.Namespace) -> int:
    try:
        topic_filter = TopicFilter(args.filter)
    except TopicError as exc:
        sys.stderr.write(f"argentic-edge: record: the filter {args.filter!r}: {exc}\n")
        return 1
    config = bus_config(args)
    context: zmq.Context[Any] = zmq.Context()
    subscriber = Subscriber(
        context,
        bus_endpoint(args, config, True),
        topic_filter,
        encoding=config.messaging.topic_encoding,
        connect_timeout=config.messaging.connect_timeout / 1000,
    )
    stopped = _stop_flag()
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    count = 0
    try:
        with args.output.open("wb") as output:
            sys.stderr.write(f"recording {topic_filter} to {args.output}\n")
            sys.stderr.flush()
            while not stopped[0] and (deadline is None or time.monotonic() < deadline):
                for message in subscriber.messages(timeout=POLL):
                    output.write(line(message.topic, message.payload, time.time()))
                    output.flush()
                    count += 1
                    if (args.count and count >= args.count) or stopped[0]:
                        break
                if args.count and count >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        sys.stderr.write(f"argentic-edge: record: cannot write {args.output}: {exc.strerror}\n")
        return 1
    finally:
        subscriber.close()
        context.term()
    sys.stderr.write(f"recorded {count} message(s)\n")
    return 0
