"""Prometheus exporter for Anthropic's Admin API usage and cost reports, plus client middleware."""

__version__ = "0.1.0"
