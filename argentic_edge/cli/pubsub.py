"""``argentic-edge pub`` and ``sub``: mosquitto_pub and mosquitto_sub for the ZeroMQ bus.

The options are mosquitto's, so muscle memory and scripts carry over: ``-t`` (repeatable for
``sub``), ``-m``, ``-h``, ``-p``, ``-l``, ``-s``, ``-n``, ``-C``, ``-v``, ``-N``, ``-W`` (exit 27 on
timeout, as mosquitto_sub) and ``-F`` with the common subset of mosquitto's format sequences
(:data:`FORMAT_HELP`). The positional forms (``pub TOPIC MESSAGE``, ``sub FILTER``) keep working.
``-h`` is the host, as in mosquitto, so help is ``--help`` only.

``pub`` says on stderr when no subscriber on the bus covered the topic: the bus forwards every
subscription to a publisher that connects, so this is the bus's own knowledge, not a guess.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from argentic_edge.bus.proxy import connect_host, tcp_endpoint
from argentic_edge.client.bus import Publisher, Subscriber
from argentic_edge.config import EdgeConfig, find_config_file, load_config
from argentic_edge.topics import TopicFilter

TIMED_OUT = 27  # mosquitto_sub's exit code when -W runs out
FRONTEND_PORT = "5555, or messaging.port"  # where publishers connect
BACKEND_PORT = "5556, or messaging.backend_port"  # where subscribers connect

FORMAT_HELP = (
    "output format, as mosquitto_sub -F: %%t topic, %%p payload, %%l payload length, "
    "%%x / %%X payload in hex, %%j JSON with the payload as a string, %%J JSON with the "
    "payload as JSON, %%I ISO-8601 time, %%U Unix time, %%%% a literal %%; \\n, \\t, \\r, "
    "\\0, \\e and \\\\ are escapes. A newline follows each message unless -N"
)


# --- shared ---------------------------------------------------------------------------------


def bus_config(args: argparse.Namespace) -> EdgeConfig:
    return load_config(find_config_file(args.config))


def bus_endpoint(args: argparse.Namespace, config: EdgeConfig, backend: bool) -> str:
    bus = config.messaging
    host = args.host or connect_host(bus.broker_address)
    port = args.port or (bus.backend_port if backend else bus.port)
    return tcp_endpoint(host, port)


def bus_options(parser: argparse.ArgumentParser, default_port: str) -> None:
    parser.add_argument("--help", action="help", help="show this help message and exit")
    parser.add_argument("--config", "-c", help="take the bus address and ports from this file")
    parser.add_argument(
        "-h", "--host", help="bus host (default: from the configuration, else local)"
    )
    parser.add_argument("-p", "--port", type=int, help=f"bus port (default: {default_port})")


def bus_command(
    subparsers: Any,
    name: str,
    help: str,
    func: Callable[[argparse.Namespace], int],
    arguments: Callable[[argparse.ArgumentParser], None],
    *,
    backend: bool,
) -> None:
    """A subcommand that talks to the bus (``record``, ``replay``): its own ``arguments``, then
    the bus options of ``pub`` (frontend port) or ``sub`` (``backend``: the port it reads from)."""
    parser = subparsers.add_parser(name, add_help=False, help=help)
    arguments(parser)
    bus_options(parser, BACKEND_PORT if backend else FRONTEND_PORT)
    parser.set_defaults(func=func)


# --- pub ------------------------------------------------------------------------------------


def _usage(args: argparse.Namespace, message: str) -> None:
    """Options that do not make sense together: argparse's usage line and exit code 2."""
    args.parser.error(message)


def _messages(args: argparse.Namespace) -> Iterator[bytes]:
    """The payloads to send, from the one source the options name (checked now, read later:
    ``-l`` sends each line as it comes)."""
    sources = [
        name
        for name, given in (
            ("MESSAGE", args.message_arg is not None),
            ("-m", args.message is not None),
            ("-l", args.lines),
            ("-s", args.stdin),
            ("-n", args.null),
        )
        if given
    ]
    if len(sources) != 1:
        _usage(
            args,
            f"give exactly one message source (-m MESSAGE, -l, -s, -n or a MESSAGE argument); "
            f"got {', '.join(sources) or 'none'}",
        )
    return _read(args)


def _read(args: argparse.Namespace) -> Iterator[bytes]:
    text = args.message if args.message is not None else args.message_arg
    if args.null:
        yield b""
    elif args.stdin or text == "-":
        yield sys.stdin.buffer.read()
    elif args.lines:
        for line in sys.stdin.buffer:
            line = line.rstrip(b"\r\n")
            if line:  # an empty line is no Argentic message
                yield line
    else:
        yield text.encode()


def cmd_pub(args: argparse.Namespace) -> int:
    if (args.topic is None) == (args.topic_arg is None):
        _usage(args, "give the topic once, as -t TOPIC or as the first argument")
    topic = str(args.topic or args.topic_arg)
    messages = _messages(args)
    config = bus_config(args)
    endpoint = bus_endpoint(args, config, backend=False)
    context = zmq.Context()
    sent = unreached = 0
    try:
        publisher = Publisher(
            context,
            endpoint,
            connect_timeout=config.messaging.connect_timeout / 1000,
            encoding=config.messaging.topic_encoding,
        )
        try:
            publisher.wait_for(topic, args.wait)
            for payload in messages:
                sent += 1
                unreached += not publisher.send(topic, payload)
        finally:
            publisher.close()
    finally:
        context.term()
    if unreached:
        counted = "the message" if sent == 1 else f"{unreached} of {sent} messages"
        sys.stderr.write(
            f"argentic-edge: no subscriber on the bus at {endpoint} covers {topic!r} (waited "
            f"{args.wait:g}s): {counted} reached no one\n"
        )
    return 0


# --- sub ------------------------------------------------------------------------------------


def cmd_sub(args: argparse.Namespace) -> int:
    texts = [*args.filters, *(args.topics or ())]
    if not texts:
        _usage(args, "give at least one filter, as -t FILTER or as an argument")
    filters = [TopicFilter(text) for text in texts]
    config = bus_config(args)
    endpoint = bus_endpoint(args, config, backend=True)
    deadline = time.monotonic() + args.W if args.W is not None else None
    context = zmq.Context()
    count = 0
    subscriber = Subscriber(
        context,
        endpoint,
        filters,
        encoding=config.messaging.topic_encoding,
        connect_timeout=config.messaging.connect_timeout / 1000,
    )
    end = "" if args.no_newline else "\n"
    try:
        for message in subscriber.messages(timeout=args.timeout, deadline=deadline):
            sys.stdout.write(render(message.topic, message.payload, args) + end)
            sys.stdout.flush()
            count += 1
            if args.count and count >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.close()
        context.term()
    if args.count and count >= args.count:
        return 0
    if deadline is not None and time.monotonic() >= deadline:
        sys.stderr.write(f"argentic-edge: timed out after {args.W:g}s (-W)\n")
        return TIMED_OUT
    return 0 if not args.count else 1


def render(topic: str, payload: bytes, args: argparse.Namespace) -> str:
    """One message as ``sub`` prints it: -F, --json, -v or the payload alone."""
    if args.format is not None:
        return format_message(args.format, topic, payload)
    if args.json:
        return json.dumps({"topic": topic, "payload": _json_payload(payload)}, ensure_ascii=False)
    text = payload.decode("utf-8", "backslashreplace")
    return f"{topic} {text}" if args.verbose else text


def _json_payload(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "backslashreplace")


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "e": "\x1b", "\\": "\\"}


def format_message(template: str, topic: str, payload: bytes, now: float | None = None) -> str:
    """mosquitto_sub's ``-F`` for a bus message (the subset without MQTT properties, width or
    precision; a bus message has no QoS or retain flag, %j and %J leave them out)."""
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now).astimezone()
    text = payload.decode("utf-8", "backslashreplace")

    def document(raw_json: bool) -> str:
        body = _json_payload(payload) if raw_json else text
        record: dict[str, Any] = {
            "tst": moment.isoformat(timespec="microseconds"),
            "topic": topic,
            "payloadlen": len(payload),
            "payload": body,
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))

    fields: dict[str, Callable[[], str]] = {
        "t": lambda: topic,
        "p": lambda: text,
        "l": lambda: str(len(payload)),
        "x": lambda: payload.hex(),
        "X": lambda: payload.hex().upper(),
        "j": lambda: document(False),
        "J": lambda: document(True),
        "I": lambda: moment.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "U": lambda: f"{moment.timestamp():.9f}",
        "%": lambda: "%",
    }
    out: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        following = template[index + 1 : index + 2]
        if char == "%" and following in fields:
            out.append(fields[following]())
            index += 2
        elif char == "\\" and following in _ESCAPES:
            out.append(_ESCAPES[following])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


# --- the parsers ----------------------------------------------------------------------------


def add_parsers(subparsers: Any) -> None:
    """``pub`` and ``sub`` on the main CLI's subparsers."""
    pub = subparsers.add_parser(
        "pub",
        add_help=False,
        help="publish on the bus (like mosquitto_pub: -t TOPIC -m MESSAGE)",
    )
    pub.add_argument("topic_arg", nargs="?", metavar="TOPIC")
    pub.add_argument(
        "message_arg",
        nargs="?",
        metavar="MESSAGE",
        help="the payload (Argentic JSON); - reads standard input",
    )
    pub.add_argument("-t", "--topic", help="the topic to publish on")
    pub.add_argument("-m", "--message", help="the payload")
    pub.add_argument(
        "-l", "--stdin-line", dest="lines", action="store_true", help="one message per stdin line"
    )
    pub.add_argument(
        "-s", "--stdin-file", dest="stdin", action="store_true", help="stdin as one message"
    )
    pub.add_argument(
        "-n", "--null-message", dest="null", action="store_true", help="an empty payload"
    )
    pub.add_argument(
        "--wait",
        type=float,
        default=1.0,
        help="seconds to wait for a matching subscriber before sending (default 1)",
    )
    bus_options(pub, FRONTEND_PORT)
    pub.set_defaults(func=cmd_pub, parser=pub)

    sub = subparsers.add_parser(
        "sub",
        add_help=False,
        help="print bus messages matching MQTT-style filters (like mosquitto_sub: -t FILTER)",
    )
    sub.add_argument("filters", nargs="*", metavar="FILTER", help="e.g. agent/+/status, agent/#")
    sub.add_argument("-t", "--topic", dest="topics", action="append", help="a filter (repeatable)")
    sub.add_argument("-v", "--verbose", action="store_true", help="print the topic too")
    sub.add_argument("-C", "--count", type=int, default=0, help="exit after COUNT messages")
    sub.add_argument("-F", dest="format", metavar="FORMAT", help=FORMAT_HELP)
    sub.add_argument(
        "-N", dest="no_newline", action="store_true", help="no newline after each message"
    )
    sub.add_argument(
        "-W",
        type=float,
        metavar="SECONDS",
        help=f"stop after SECONDS in all, with exit code {TIMED_OUT} (as mosquitto_sub)",
    )
    sub.add_argument("--json", action="store_true", help="one JSON object per message")
    sub.add_argument(
        "--timeout", type=float, default=None, help="exit after this many seconds without a message"
    )
    bus_options(sub, BACKEND_PORT)
    sub.set_defaults(func=cmd_sub, parser=sub)
