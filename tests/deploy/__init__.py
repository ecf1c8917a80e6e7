"""Tests of deploy/: Prometheus rules, Grafana dashboards, container, compose, Kubernetes, systemd."""
