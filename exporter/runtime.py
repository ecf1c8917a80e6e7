"""The running exporter: the configuration in force, its state and pollers; a reload swaps them.

A reload (SIGHUP or POST /-/reload) reads the configuration again. A bad one is logged and the
running one stays (``anthropic_exporter_config_last_reload_successful`` 0). One that differs
only in admin keys (a rotated Kubernetes Secret or systemd credential) hands the new keys to
the running pollers, which keep their data. Any other change starts new pollers on a new state:
the held buckets are read again, and the exporter's own counters start again from 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.admin_api import ENDPOINTS
from exporter.collector import AdminCollector
from exporter.config import Config, ConfigError, Secret
from exporter.poller import Poller
from exporter.state import ExporterState

log = logging.getLogger(__name__)


class Runtime:
    """Owns the state and the poller threads of one configuration at a time."""

    def __init__(self, config: Config, load: Callable[[], Config], *, wall: Callable[[], float] = time.time,
                 make_poller: Callable[..., Poller] = Poller):
        self.load = load
        self.wall = wall
        self.make_poller = make_poller
        self._lock = threading.Lock()
        self.config = config
        self.state = self._new_state(config)
        self.collector = AdminCollector(self.state, price_table_version=str(config.pricing.version))
        self.pollers: list[Poller] = []
        self._stop = threading.Event()
        self.on_swap: list[Callable[[ExporterState], None]] = []
        self.last_reload_successful = True
        self.last_reload_success = wall()
        self.reloads = 0

    @staticmethod
    def _new_state(config: Config) -> ExporterState:
        return ExporterState([org.name for org in config.organizations], ENDPOINTS, config.reports())

    def generation(self) -> tuple[int, int, int]:
        """Changes whenever what the collectors render changes."""
        return id(self.state), self.state.generation, self.reloads

    def start(self) -> None:
        """One daemon thread per organization, so a slow organization delays no other."""
        self.pollers = [self.make_poller(org, self.config, self.state) for org in self.config.organizations]
        for poller in self.pollers:
            threading.Thread(target=poller.run, args=(self._stop,), name=f"poller-{poller.org.name}",
                             daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> bool:
        """Read the configuration again and apply it; False (the old one kept) if it is bad."""
        with self._lock:
            try:
                new = self.load()
            except ConfigError as exc:
                self.last_reload_successful = False
                self.reloads += 1
                log.error("reload failed, the running configuration stays: %s", "; ".join(exc.problems))
                return False
            if self._only_keys_differ(new):
                for poller, org in zip(self.pollers, new.organizations, strict=True):
                    poller.client.set_key(org.api_key)
                log.info("configuration reloaded: admin keys handed to the running pollers")
            else:
                self._stop.set()  # the old pollers end after their current poll
                self._stop = threading.Event()
                self.config = new
                self.state = self._new_state(new)
                self.collector.state = self.state
                self.collector.price_table_version = str(new.pricing.version)
                for callback in self.on_swap:
                    callback(self.state)
                self.start()
                log.info("configuration reloaded: new pollers started")
            self.config = new
            self.last_reload_successful = True
            self.last_reload_success = self.wall()
            self.reloads += 1
            return True

    def _only_keys_differ(self, new: Config) -> bool:
        def keyless(config: Config) -> Config:
            return replace(config, organizations=tuple(replace(o, api_key=Secret("")) for o in config.organizations))
        return keyless(new) == keyless(self.config) and len(self.pollers) == len(new.organizations)


class ReloadCollector:
    """``anthropic_exporter_config_last_reload_successful`` and its timestamp."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily("anthropic_exporter_config_last_reload_successful",
                               "1 if the newest configuration load (start, SIGHUP, POST /-/reload) succeeded; a failed"
                               " reload keeps the previous configuration running.")
        ok.add_metric([], 1 if self.runtime.last_reload_successful else 0)
        yield ok
        stamp = GaugeMetricFamily("anthropic_exporter_config_last_reload_success_timestamp_seconds",
                                  "Unix time of the newest successful configuration load.")
        stamp.add_metric([], self.runtime.last_reload_success)
        yield stamp
