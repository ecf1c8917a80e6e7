"""Reading a decoded YAML document: every problem collected, each naming its place."""

from __future__ import annotations

from typing import Any


class DocumentReader:
    """Walks a document once, collecting problems instead of stopping at the first.

    Each kind of document words a value's kind its own way (``describe``) and may explain
    particular unknown keys (``unknown_key``).
    """

    top = ""  # what a problem with the document's top level is said of

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def describe(self, value: Any) -> str:
        raise NotImplementedError

    def unknown_key(self, where: str, allowed: tuple[str, ...]) -> str:
        return f"unknown key (allowed: {', '.join(allowed)})"

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], *, required: bool = False) -> dict[str, Any]:
        """The allowed keys of a mapping; None is an empty one unless ``required``."""
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.problem(path or self.top, f"must be a mapping, got {self.describe(value)}")
            return {}
        for key in value:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.problem(where, self.unknown_key(where, allowed))
        return {k: v for k, v in value.items() if k in allowed}

    def string(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.problem(path, f"must be a non-empty string, got {self.describe(value)}")
            return None
        return value
