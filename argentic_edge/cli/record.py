"""``argentic-edge record FILTER -o FILE``: bus traffic matching an MQTT-style filter, written as
the recording format's JSON lines (inspector/recording.py) with the time each message was seen,
until Ctrl-C, SIGTERM, ``--count`` messages or ``--duration`` seconds."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import zmq

from argentic_edge.client.bus import Subscriber
from argentic_edge.config import EdgeConfig
from argentic_edge.inspector.recording import line
from argentic_edge.topics import TopicError, TopicFilter

POLL = 0.2  # seconds between checks of the deadline and the stop signal

Config = Callable[[argparse.Namespace], EdgeConfig]
Endpoint = Callable[[argparse.Namespace, EdgeConfig, bool], str]


def add_parser(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    bus_options: Callable[[argparse.ArgumentParser], None],
    config: Config,
    endpoint: Endpoint,
) -> None:
    parser = subparsers.add_parser(
        "record", add_help=False, help="record bus traffic to a JSON lines file"
    )
    parser.add_argument("filter", help="MQTT-style filter, e.g. agent/#, #")
    parser.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    parser.add_argument("-C", "--count", type=int, default=0, help="stop after COUNT messages")
    parser.add_argument("--duration", type=float, default=0, help="stop after SECONDS")
    bus_options(parser)
    parser.set_defaults(func=lambda args: cmd_record(args, config, endpoint))


def _stop_flag() -> list[bool]:
    stopped = [False]

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped[0] = True

    signal.signal(signal.SIGTERM, stop)
    return stopped


def cmd_record(args: argparse.Namespace, config_of: Config, endpoint_of: Endpoint) -> int:
    try:
        topic_filter = TopicFilter(args.filter)
    except TopicError as exc:
        sys.stderr.write(f"argentic-edge: record: the filter {args.filter!r}: {exc}\n")
        return 1
    config = config_of(args)
    context: zmq.Context[Any] = zmq.Context()
    subscriber = Subscriber(
        context,
        endpoint_of(args, config, True),
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
