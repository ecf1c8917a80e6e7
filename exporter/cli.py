"""Command line: run the exporter, check a config, poll once, run the demo, or read the request log."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from exporter import __version__
from exporter.client.log_cli import DEFAULT_LOG, ENV_LOG
from exporter.collector import ExpositionCache, runtime_registry
from exporter.config import Config, ConfigError, Organization, Secret, load_config, redacted_dump
from exporter.logs import LEVELS, configure
from exporter.poller import Poller
from exporter.runtime import ReloadCollector, Runtime
from exporter.server import DEFAULT_MAX_REQUESTS, ExporterServer
from exporter.webconfig import WebConfigError, WebConfigWatcher

log = logging.getLogger(__name__)

DEFAULT_PORT = 10711


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anthropic-usage-exporter",
        description="Export Anthropic Admin API usage and cost reports as Prometheus metrics. "
                    "Run 'anthropic-usage-exporter requests --help' to read the client middleware's request log,"
                    " 'anthropic-usage-exporter prices --help' for the price table in force.",
    )
    parser.add_argument("--config.file", dest="config_file", metavar="PATH",
                        help="YAML configuration file (default: one organization, key from $ANTHROPIC_ADMIN_API_KEY)")
    parser.add_argument("--web.listen-address", dest="listen_address", default=f":{DEFAULT_PORT}",
                        metavar="[HOST]:PORT", help=f"address to serve metrics on (default :{DEFAULT_PORT})")
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                        help="path of the metrics endpoint (default /metrics)")
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="PATH",
                        help="TLS and basic auth configuration in the exporter-toolkit format (default: none)")
    parser.add_argument("--web.max-requests", dest="max_requests", type=_max_requests, default=DEFAULT_MAX_REQUESTS,
                        metavar="N", help="most scrapes served at once, 503 beyond; 0: no limit"
                                          f" (default {DEFAULT_MAX_REQUESTS})")
    parser.add_argument("--log.level", dest="log_level", choices=list(LEVELS), default="info",
                        help="only log messages of this severity or above (default info)")
    parser.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"], default="logfmt",
                        help="output format of log messages on stderr (default logfmt)")
    parser.add_argument("--config.check", dest="config_check", action="store_true",
                        help="validate the configuration (and the --web.config.file), print the configuration with"
                             " secrets redacted, and exit")
    parser.add_argument("--once", action="store_true",
                        help="poll every report once, print the metrics to stdout, exit 1 if any poll failed")
    parser.add_argument("--demo", action="store_true",
                        help="poll a built-in simulated organization instead of the real API (no key needed)")
    parser.add_argument("--demo.request-log", dest="demo_request_log", metavar="PATH",
                        help=f"where the demo's client traffic logs its requests (default ${ENV_LOG}, else"
                             f" {DEFAULT_LOG}: where 'anthropic-usage-exporter requests' looks)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _max_requests(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0: no limit)")
    return int(text)


def parse_listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: {text!r} is not [HOST]:PORT")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["requests"]:
        from exporter.client.log_cli import main as requests_main
        return requests_main(argv[1:])
    if argv[:1] == ["prices"]:
        from exporter.pricing.cli import main as prices_main
        return prices_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(args.log_level, args.log_format)
    try:
        address = parse_listen_address(args.listen_address)
        path = args.telemetry_path
        if not path.startswith("/") or path == "/" or path.startswith("/-/"):
            raise ValueError(f"--web.telemetry-path: {args.telemetry_path!r} must start with / and not be / or /-/...")
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    web_config_ok = True
    if args.config_check and args.web_config_file:
        # Serving loads it anyway; a check should not pass a file that would stop the start.
        try:
            WebConfigWatcher(args.web_config_file)
        except WebConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            web_config_ok = False
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"error: invalid configuration ({len(exc.problems)} problem"
              f"{'s' if len(exc.problems) != 1 else ''}):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if not web_config_ok:
        return 2
    if args.config_check and not args.demo:
        sys.stdout.write(redacted_dump(config))
        return 0
    simulator = _start_simulator() if args.demo else None
    if simulator is not None:
        config = _demo_config(config, simulator)
        if args.config_check:
            sys.stdout.write(redacted_dump(config))
            return 0
    demo = simulator
    runtime = Runtime(config, lambda: _demo_config(_load(args), demo) if demo is not None else _load(args))
    polled = CollectorRegistry(auto_describe=False)
    polled.register(runtime.collector)
    polled.register(ReloadCollector(runtime))
    if args.once:
        ok = all([Poller(org, config, runtime.state).poll_all() for org in config.organizations])
        sys.stdout.write(generate_latest(polled).decode())
        return 0 if ok else 1
    return _serve(args, address, runtime, polled, simulator)


def _demo_config(config: Config, simulator: _Simulator) -> Config:
    """The configuration with the simulated organization in place of the configured ones."""
    # The simulated organization uses fast mode: grouped by speed, the estimate prices it right.
    group_by = config.group_by if "speed" in config.group_by else (*config.group_by, "speed")
    return replace(config, organizations=(
        Organization("demo", Secret(simulator.admin_key), simulator.url, None, None),), group_by=group_by)


def _load(args: argparse.Namespace) -> Config:
    # The demo replaces the organizations, so their keys need not exist.
    return load_config(args.config_file, resolve_keys=not args.demo)


class _Simulator:
    def __init__(self) -> None:
        from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer
        self.server = SimulatorServer(SimulatedOrganization(seed=7), host="127.0.0.1", port=0).start()
        self.url = self.server.url
        self.admin_key = ADMIN_KEY


def _start_simulator() -> _Simulator:
    sim = _Simulator()
    log.info("demo mode: polling a simulated organization", extra={"simulator": sim.url})
    return sim


def _serve(args: argparse.Namespace, address: tuple[str, int], runtime: Runtime, polled: CollectorRegistry,
           simulator: _Simulator | None) -> int:
    live = runtime_registry()
    exposition = ExpositionCache(polled, live, runtime.generation)
    links: tuple[tuple[str, str], ...] = ()
    if simulator is not None:
        links = ((simulator.url + "/v1/organizations/workspaces", "Simulated Admin API (needs a key)"),)
    try:
        server = ExporterServer(address, exposition, runtime.state, args.telemetry_path, links,
                                web_config_file=args.web_config_file, max_requests=args.max_requests,
                                reload=runtime.reload)
    except WebConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        log.error("cannot listen", extra={"address": args.listen_address, "err": exc.strerror})
        return 1
    runtime.on_swap.append(lambda state: setattr(server, "state", state))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # Reload outside the signal handler: it reads files and starts threads.
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=runtime.reload, name="reload").start())
    runtime.start()
    if simulator is not None:
        request_log = args.demo_request_log or os.environ.get(ENV_LOG) or DEFAULT_LOG
        _start_demo_traffic(simulator, live, request_log, stop)
    server.start()
    host, port = str(server.server_address[0]), server.server_address[1]
    shown = "localhost" if host in ("", "0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    log.info("listening", extra={"address": f"{host}:{port}",
                                 "url": f"http://{shown}:{port}/", "version": __version__})
    # Wake now and then: a signal delivered to another thread runs its Python handler only when
    # the main thread runs again, and an untimed wait may never return to let it.
    while not stop.wait(0.5):
        pass
    log.info("shutting down")
    runtime.stop()
    server.shutdown()
    return 0


def _start_demo_traffic(simulator: _Simulator, registry: CollectorRegistry, request_log: str,
                        stop: threading.Event) -> None:
    """Send a little traffic through an instrumented SDK client, so client metrics show too."""
    from exporter.client.demo import drive_demo_traffic
    thread = threading.Thread(target=drive_demo_traffic, name="demo-traffic", daemon=True,
                              args=(simulator.url, registry, request_log, stop))
    thread.start()
    log.info("demo mode: sending sample Messages API traffic", extra={"request_log": request_log})


def run() -> None:
    raise SystemExit(main())
