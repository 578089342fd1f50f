"""The ``argentic-edge`` command: run the appliance, the standalone proxy, and the tools.

Exit codes follow the usual convention: 0 success, 1 a problem the user can fix (each one
explained on stderr, never as a traceback), 2 wrong usage (argparse's own).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

import argentic_edge.cli.certs as certs_cli
import argentic_edge.cli.ha_remove as ha_remove_cli
import argentic_edge.cli.peers as discovery_cli
import argentic_edge.cli.pubsub as pubsub_cli
import argentic_edge.cli.record as record_cli
import argentic_edge.cli.replay as replay_cli
from argentic_edge import __version__
from argentic_edge.bus.proxy import Bus
from argentic_edge.config import (
    ConfigError,
    EdgeConfig,
    dump_yaml,
    file_problems,
    find_config_file,
    load_config,
)
from argentic_edge.errors import EdgeError

log = logging.getLogger("argentic_edge")

Handler = Callable[[argparse.Namespace], int]


def _fail(message: str) -> int:
    sys.stderr.write(f"argentic-edge: {message}\n")
    return 1


def _config(args: argparse.Namespace) -> EdgeConfig:
    return load_config(find_config_file(getattr(args, "config", None)))


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C); either means a clean stop.

    Installed before anything starts, so a signal that arrives while services are still starting
    stops the appliance cleanly once they are up, instead of killing it half-started.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


# --- run and proxy --------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from argentic_edge.app import Edge

    if args.addon:
        from argentic_edge.homeassistant.runtime import run_addon

        def appliance(config: EdgeConfig, config_path: str, compose: Callable[[Any], Any]) -> Edge:
            return Edge(config, config_path=config_path, addon=True, compose=compose)

        async def addon() -> None:
            await run_addon(_stop_on_signals(), appliance)
            log.info("stopped")

        asyncio.run(addon())
        return 0

    args.config = find_config_file(args.config)
    config = _config(args)
    if args.log_level is None:
        logging.getLogger().setLevel(config.log_level.upper())
    if args.config:
        log.info("configuration: %s", Path(args.config).resolve())
    else:
        log.info("configuration: the embedded defaults (no --config, no saved file)")

    async def main() -> None:
        await Edge(config, config_path=args.config).run_until(_stop_on_signals())
        log.info("stopped")

    asyncio.run(main())
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    config = _config(args)
    bus_config = config.messaging

    async def main() -> Bus:
        stop = _stop_on_signals()
        bus = Bus(bus_config)
        await bus.start()
        try:
            await stop.wait()
        finally:
            await bus.stop()
        return bus

    bus = asyncio.run(main())
    stats = bus.stats()
    if stats is not None:
        sys.stdout.write(yaml.safe_dump({"counters": stats.to_dict()}, sort_keys=False))
    return 0


# --- check-config ---------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        return _fail(str(exc))
    problems = file_problems(config)
    if problems:
        return _fail(str(ConfigError(problems)))
    sys.stdout.write(dump_yaml(config))
    return 0


# --- bench ----------------------------------------------------------------------------------

CHECKOUT = Path(__file__).resolve().parents[2]  # the source checkout, where bench/ lives


def bench_suites(root: Path = CHECKOUT) -> list[str] | None:
    """The suites bench/__main__.py runs (its SUITES, then OPT_IN), read from its source: the
    package does not ship bench/ and cannot import it, and a list of its own would drift.
    None outside a checkout (``cmd_bench`` then says why it cannot run)."""
    try:
        tree = ast.parse((root / "bench" / "__main__.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    names: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("SUITES", "OPT_IN")
        ):
            names[node.targets[0].id] = tuple(ast.literal_eval(node.value))
    return [*names.get("SUITES", ()), *names.get("OPT_IN", ())] or None


def cmd_bench(args: argparse.Namespace) -> int:
    """Run bench/ from the source checkout this package was installed from."""
    root = CHECKOUT
    if not (root / "bench" / "__main__.py").is_file():
        return _fail(
            "the benchmarks ship with the source checkout (bench/ beside argentic_edge/); "
            "run this from a clone installed with scripts/setup"
        )
    command = [
        sys.executable,
        "-m",
        "bench",
        *(["--quick"] if args.quick else []),
        *(["--json", str(args.json)] if args.json else []),
    ]
    for only in args.only or ():
        command += ["--only", only]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(command, cwd=root, env=env, check=False).returncode


# --- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argentic-edge",
        description="A LAN messaging appliance for Argentic agents: ZeroMQ bus, MQTT bridge, "
        "discovery, certificates and a status page.",
    )
    _global_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the appliance (bus, bridge, discovery, web)")
    run.add_argument(
        "--config",
        "-c",
        help="YAML configuration (default: the file the web editor saved in the data "
        "directory, else the embedded defaults)",
    )
    run.add_argument(
        "--addon",
        action="store_true",
        help="Home Assistant add-on mode: options from /data/options.json, the "
        "Supervisor's MQTT service, ingress",
    )
    run.set_defaults(func=cmd_run)

    proxy = sub.add_parser("proxy", help="run only the ZeroMQ proxy (proxy_mode: external setups)")
    proxy.add_argument("--config", "-c")
    proxy.set_defaults(func=cmd_proxy)

    check = sub.add_parser("check-config", help="validate a configuration file and print it")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    pubsub_cli.add_parsers(sub)

    bench = sub.add_parser("bench", help="run the benchmarks (from a source checkout)")
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--json", type=Path)
    bench.add_argument(
        "--only",
        action="append",
        choices=bench_suites(),
        help="run only this suite (repeatable); soak runs only when named",
    )
    bench.set_defaults(func=cmd_bench)

    certs_cli.add_parser(sub)
    discovery_cli.add_parser(sub)
    ha_remove_cli.add_parser(sub)
    record_cli.add_parser(sub)
    replay_cli.add_parser(sub)
    # `run --log-level debug` as well as `--log-level debug run`
    for command in _commands(parser):
        _global_options(command, default=argparse.SUPPRESS)
    return parser


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command's parser, nested ones (`certs show`) included."""
    found = []
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):
                found += [command, *_commands(command)]
    return found


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--version and --log-level, before or after the command: a command's copy defaults to
    SUPPRESS so that it never overwrites what was given before the command."""
    parser.add_argument("--version", action="version", version=f"argentic-edge {__version__}")
    parser.add_argument(
        "--log-level",
        default=default,
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="overrides the configuration's log_level",
    )


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level
    if level is None:
        level = "info" if args.command in ("run", "proxy") else "warning"
    _configure_logging(level)
    try:
        return int(args.func(args))
    except EdgeError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
