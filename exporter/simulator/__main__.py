"""Runs the simulator standalone: ``python -m exporter.simulator --port 8080 --seed 7``."""

from __future__ import annotations

import argparse
import threading

from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description="Serve a synthetic organization's Admin API reports and a Messages API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic organization")
    parser.add_argument("--rate-limits-shape", choices=("current", "beta"), default="current",
                        help="rate-limit entries with a `group` object, or the older beta shape")
    parser.add_argument("--cost-skew", action="append", default=[], metavar="[SELECTOR=]FACTOR",
                        help="bill token cost at FACTOR times the price table (the exporter's "
                             "estimate-to-bill ratio shows 1/FACTOR): everywhere, or for a "
                             "SELECTOR: a model id, WORKSPACE/MODEL or WORKSPACE/* (WORKSPACE: "
                             "a name, an id or 'default'); repeatable")
    args = parser.parse_args(argv)

    skew: dict[str, str] = {}
    for item in args.cost_skew:
        selector, _, factor = item.rpartition("=")
        skew[selector or "*"] = factor
    try:
        org = SimulatedOrganization(seed=args.seed, cost_skew=skew)
    except ValueError as error:
        parser.error(f"--cost-skew: {error}")
    try:
        server = SimulatorServer(org, args.host, args.port,
                                 rate_limits_shape=args.rate_limits_shape).start()
    except OSError as error:
        parser.exit(2, f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {error}\n")
    try:  # from here on, Ctrl-C stops the server and exits 0
        print(f"Simulator listening on {server.url}", flush=True)
        print(f"Admin key: {ADMIN_KEY}", flush=True)
        fault = '{"path_prefix": "/v1/organizations", "fault": "429", "times": 3, "retry_after": 2}'
        print(f"Inject a fault: curl -X POST {server.url}/_simulator/faults -d '{fault}'", flush=True)
        spike = '{"workspace": "Production", "minutes": 60, "factor": 25}'
        print(f"Spike spend: curl -X POST {server.url}/_simulator/spikes -d '{spike}'", flush=True)
        if org.cost_skew:
            shown = ", ".join(f"{selector}={factor}" for selector, factor in org.cost_skew.items())
            print(f"Token cost billed at the price table times: {shown}", flush=True)
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
