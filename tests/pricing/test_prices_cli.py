"""``anthropic-usage-exporter prices``: the table in force, at a date, with a configuration's overrides."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.pricing import default_table, load_table
from exporter.pricing.cli import main

from .test_pricing_config import SMALL

NOW = datetime(2026, 12, 3, 9, tzinfo=UTC)


def run(*argv: str, **kwargs: object) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out, now=NOW, **kwargs) == 0  # type: ignore[arg-type]
    return out.getvalue()


def line_of(text: str, model: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.startswith(model + " "))


def following(text: str, model: str) -> list[str]:
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(model + " "))
    return lines[index + 1].split()


def test_the_shipped_table_today() -> None:
    text = run()
    table = default_table()
    assert text.startswith(f"Price table version {table.version}, checked {table.checked.isoformat()}.\n")
    assert "Rates in force on 2026-12-03 (UTC), USD per million tokens." in text
    assert "Negotiated discount: none." in text
    assert "Web search: 10.00 USD per 1,000 searches." in text
    assert line_of(text, "claude-opus-5") == ["claude-opus-5", "standard", "5.00", "6.25", "10.00", "0.50", "25.00",
                                              "us", "x1.1"]
    assert following(text, "claude-opus-5") == ["fast", "10.00", "12.50", "20.00", "1.00", "50.00"]
    assert line_of(text, "claude-sonnet-5-5")[5] == "0.10"
    assert line_of(text, "claude-sonnet-4-5")[-2:] == ["-", "claude-sonnet-4-5-20250929"]
    assert following(text, "claude-haiku-5-5") == ["prompt", ">", "100k", "0.50", "0.625", "1.00", "0.05", "2.50"]
    # Opus 4.8's fast mode ended on 2026-11-30.
    assert following(text, "claude-opus-4-8")[0].startswith("claude-")


def test_at_a_date() -> None:
    text = run("--at", "2026-02-15")
    assert "Rates in force on 2026-02-15 (UTC)" in text
    assert line_of(text, "claude-sonnet-5-5")[5] == "0.20"
    assert following(text, "claude-sonnet-4-5") == ["prompt", ">", "200k", "6.00", "7.50", "12.00", "0.60", "22.50"]
    assert following(text, "claude-opus-4-6") == ["prompt", ">", "200k", "10.00", "12.50", "20.00", "1.00", "37.50"]
    assert following(text, "claude-opus-4-8") == ["fast", "10.00", "12.50", "20.00", "1.00", "50.00"]


def test_exact_layout() -> None:
    assert run("--at", "2026-05-01", base=load_table(SMALL)) == (
        "Price table version 3, checked 2026-12-01.\n"
        "Rates in force on 2026-05-01 (UTC), USD per million tokens.\n"
        "Negotiated discount: none.\n"
        "Web search: 10.00 USD per 1,000 searches.\n"
        "Service tiers: standard x1, batch x0.5 (no fast mode); any other tier (flex, flex_discount) is unpriced.\n"
        "Inference geos: global x1, us x1.1, on models with data residency; any other geo is unpriced.\n"
        "Ids ending in -YYYYMMDD also match without the date.\n"
        "\n"
        "MODEL     RATES     INPUT  5M WRITE  1H WRITE  CACHE READ  OUTPUT  DATA RESIDENCY  ALSO MATCHES\n"
        "claude-a  standard   1.00      1.25      2.00        0.10    5.00  -               claude-a-20260101\n"
        "          fast       2.00      2.50      4.00        0.20   10.00\n"
    )


def test_with_a_configuration(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("organizations: [{name: acme}]\n"
                      "pricing:\n"
                      "  discount: 0.12\n"
                      "  models:\n"
                      "    claude-opus-5: {input: 4, output: 20}\n"
                      "    claude-x: {input: 1, output: 5, aliases: [claude-x-latest]}\n")
    text = run("--config.file", str(config))
    assert "Negotiated discount: 12% off every figure below (from the configuration)." in text
    assert "Web search: 8.80 USD per 1,000 searches." in text
    assert line_of(text, "claude-opus-5") == ["claude-opus-5", "(config)", "standard", "3.52", "4.40", "7.04",
                                              "0.352", "17.60", "us", "x1.1"]
    assert following(text, "claude-opus-5")[0] != "fast"
    assert line_of(text, "claude-sonnet-5")[2] == "1.76"
    assert line_of(text, "claude-x")[-1] == "claude-x-latest"


def test_a_configuration_without_pricing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("organizations: [{name: acme}]\n")
    assert run("--config.file", str(config)) == run()


@pytest.mark.parametrize(("content", "stderr"), [
    ("pricing:\n  discount: 1\n  models:\n    claude-x: {input: a lot}\n",
     "anthropic-usage-exporter prices: error: invalid configuration (3 problems):\n"
     "  pricing.discount: must be a number from 0 up to (not including) 1, got 1\n"
     "  pricing.models.claude-x.input: must be a non-negative number, got 'a lot'\n"
     "  pricing.models.claude-x.output: must be a non-negative number, got nothing\n"),
    ("pricing: [1]\n",
     "anthropic-usage-exporter prices: error: invalid configuration (1 problem):\n"
     "  pricing: must be a mapping, got a list\n"),
    ("pricing: {discount: [\n",
     "anthropic-usage-exporter prices: error: invalid configuration (1 problem):\n"
     "  {path}: invalid YAML (line 2, column 1): expected the node content, but found '<stream end>'\n"),
    ("- just a list\n",
     "anthropic-usage-exporter prices: error: invalid configuration (1 problem):\n"
     "  {path}: the configuration must be a mapping\n"),
])
def test_bad_configuration_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                   stderr: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(content)
    out = io.StringIO()
    assert main(["--config.file", str(config)], out=out, now=NOW) == 2
    assert out.getvalue() == ""
    assert capsys.readouterr().err == stderr.replace("{path}", str(config))


def test_missing_configuration_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config.file", str(tmp_path / "nope.yaml")], out=io.StringIO(), now=NOW) == 2
    assert "nope.yaml: cannot read config file: No such file or directory" in capsys.readouterr().err


def test_bad_date_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--at", "2026-13-01"], out=io.StringIO(), now=NOW)
    assert caught.value.code == 2
    assert "argument --at: '2026-13-01' is not a date (YYYY-MM-DD)" in capsys.readouterr().err
