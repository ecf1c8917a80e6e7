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
    args = parser.parse_args(argv)

    try:
        org = SimulatedOrganization(seed=args.seed)
        server = SimulatorServer(org, args.host, args.port,
                                 rate_limits_shape=args.rate_limits_shape).start()
    except OSError as error:
        parser.exit(2, f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {error}\n")
    print(f"Simulator listening on {server.url}", flush=True)
    print(f"Admin key: {ADMIN_KEY}", flush=True)
    fault = '{"path_prefix": "/v1/organizations", "fault": "429", "times": 3, "retry_after": 2}'
    print(f"Inject a fault: curl -X POST {server.url}/_simulator/faults -d '{fault}'", flush=True)
    try:
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
