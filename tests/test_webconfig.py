"""--web.config.file: the exporter-toolkit format parsed strictly, TLS (client certificates too),
basic auth, extra headers, files re-read when they change, and a real Prometheus scraping over
TLS with basic auth. The certificates are made per test session with the openssl command."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import bcrypt
import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Gauge
from prometheus_server import PrometheusServer

from exporter.collector import ExpositionCache
from exporter.server import ExporterServer
from exporter.state import ExporterState
from exporter.webconfig import BasicAuth, WebConfigError, load_web_config, parse_web_config

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()  # cost 4: fast tests


def openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary, "the openssl command is missing"
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=directory)


def make_leaf(directory: Path, name: str, ca: str, usage: str) -> None:
    extensions = directory / f"{name}.ext"
    extensions.write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                          f"extendedKeyUsage={usage}\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-days", "2",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-extfile", extensions.name,
            "-out", f"{name}.crt", cwd=directory)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> SimpleNamespace:
    """Two CAs; a server and a client certificate from each (all keys stay in a temporary folder)."""
    directory = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other_ca"):
        make_ca(directory, ca)
    make_leaf(directory, "server", "ca", "serverAuth")
    make_leaf(directory, "other_server", "other_ca", "serverAuth")
    make_leaf(directory, "client", "ca", "clientAuth")
    make_leaf(directory, "other_client", "other_ca", "clientAuth")
    return SimpleNamespace(dir=directory, **{name: str(directory / f"{name}.crt") for name in
                                             ("ca", "other_ca", "server", "other_server", "client", "other_client")},
                           **{f"{name}_key": str(directory / f"{name}.key") for name in
                              ("server", "other_server", "client", "other_client")})


# --- parsing: every problem at once, each with its path --------------------------------------

def problems(text: str, base_dir: str = "") -> list[str]:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(yaml.safe_load(textwrap.dedent(text)), base_dir)
    return info.value.problems


BAD_CONFIGS = [
    ("- a list", ["web config: must be a mapping, got list ['a list']"]),
    ("tls_config: {}\nrate_limit: {interval: 1s, burst: 5}",
     ["tls_config: unknown key (allowed: tls_server_config, http_server_config, basic_auth_users)",
      "rate_limit: not supported by this exporter (--web.max-requests caps concurrent scrapes)"]),
    ("tls_server_config: {cert_file: s.crt}", ["tls_server_config.key_file: missing: TLS needs cert_file and key_file"]),
    ("tls_server_config: {cert_file: s.crt, key_file: s.key, client_auth_type: Always}",
     ["tls_server_config.client_auth_type: must be one of NoClientCert, RequestClientCert, RequireAnyClientCert,"
      " VerifyClientCertIfGiven, RequireAndVerifyClientCert, got 'Always'"]),
    ("tls_server_config: {cert_file: s.crt, key_file: s.key, client_auth_type: RequireAnyClientCert}",
     ["tls_server_config.client_auth_type: RequireAnyClientCert (a certificate required but not verified) is not"
      " supported: use RequireAndVerifyClientCert with client_ca_file"]),
    ("tls_server_config: {cert_file: s.crt, key_file: s.key, client_auth_type: RequireAndVerifyClientCert}",
     ["tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file, the CA that client"
      " certificates are verified against"]),
    ("tls_server_config: {cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt}",
     ["tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert: set client_auth_type to"
      " RequireAndVerifyClientCert to require client certificates"]),
    ("tls_server_config: {cert_file: s.crt, key_file: s.key, min_version: TLS11}",
     ["tls_server_config.min_version: TLS11 is not supported (deprecated by RFC 8996): use TLS12 or TLS13"]),
    ("tls_server_config: {cert_file: s.crt, key_file: s.key, min_version: TLS13, max_version: TLS12}",
     ["tls_server_config: min_version TLS13 is above max_version TLS12"]),
    ("tls_server_config: {cert: '-----BEGIN CERTIFICATE-----', key_file: s.key, cipher_suites: [x]}",
     ["tls_server_config.cert: inline certificates are not supported: use cert_file",
      "tls_server_config.cipher_suites: not supported by this exporter (OpenSSL's defaults apply)",
      "tls_server_config.cert_file: missing: TLS needs cert_file and key_file"]),
    ("basic_auth_users: {alice: hunter2, 'b:ob': '$2y$04$abc', 123: x}",
     ["basic_auth_users.alice: must be a bcrypt hash such as htpasswd -nBC 10 \"\" | tr -d ':\\n' prints",
      "basic_auth_users.b:ob: a user name cannot hold ':' (basic auth separates the password with it)",
      "basic_auth_users: user name 123 must be a string (quote it)"]),
    ("basic_auth_users: [alice]", ["basic_auth_users: must be a mapping of user names to bcrypt hashes, got list ['alice']"]),
    ("http_server_config: {http2: 'yes', headers: {Server: x, X-Frame-Options: allow, X-Content-Type-Options: ''}}",
     ["http_server_config.http2: must be true or false, got str 'yes'",
      "http_server_config.headers.Server: this header cannot be configured (allowed: Strict-Transport-Security,"
      " X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)",
      "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin, got 'allow'"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS, ids=[c[1][0].split(":")[0] for c in BAD_CONFIGS])
def test_bad_web_configs_list_every_problem(text, expected):
    assert problems(text) == expected


def test_a_good_web_config_and_its_defaults(tmp_path):
    config = parse_web_config(yaml.safe_load(textwrap.dedent(f"""\
        tls_server_config: {{cert_file: s.crt, key_file: /abs/s.key, client_ca_file: ca.crt,
                             client_auth_type: RequireAndVerifyClientCert}}
        http_server_config: {{http2: false, headers: {{X-Frame-Options: deny, X-XSS-Protection: ''}}}}
        basic_auth_users: {{alice: '{HASH}'}}
        """)), str(tmp_path))
    assert config.tls is not None
    assert (config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file) == (
        str(tmp_path / "s.crt"), "/abs/s.key", str(tmp_path / "ca.crt"))  # relative to the file's folder
    assert (config.tls.min_version, config.tls.max_version) == ("TLS12", "TLS13")
    assert config.headers == (("X-Frame-Options", "deny"),)  # blank: unset
    assert dict(config.users) == {"alice": HASH}
    assert HASH not in repr(config)
    assert parse_web_config(None).tls is None  # an empty file: plain HTTP, no auth
    assert parse_web_config({"tls_server_config": {"min_version": "TLS13"}}).tls is None  # as the toolkit


def test_basic_auth_users_without_bcrypt_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "bcrypt", None)  # import bcrypt now fails
    assert problems(f"basic_auth_users: {{alice: '{HASH}'}}") == [
        "basic_auth_users: checking passwords needs the bcrypt package: pip install 'anthropic-usage-exporter[web]'"]


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_unusable_certificate_files_are_named(tmp_path, pki):
    garbage = write(tmp_path / "garbage.pem", "not a certificate\n")
    web = write(tmp_path / "web.yml", f"""\
        tls_server_config: {{cert_file: missing.crt, key_file: {pki.server_key}}}
        """)
    with pytest.raises(WebConfigError) as info:
        ExporterServer(("127.0.0.1", 0), None, None, web_config_file=web)
    assert str(info.value) == (f"invalid web configuration in {web} (1 problem):\n"
                               f"  tls_server_config.cert_file: cannot read {tmp_path}/missing.crt:"
                               " No such file or directory")
    cases = [
        (garbage, pki.server_key, None, [f"tls_server_config.cert_file: {garbage} holds no PEM certificate"]),
        (pki.server, pki.client_key, None,
         [f"tls_server_config.key_file: {pki.client_key} is not the key of the certificate in {pki.server}"]),
        (pki.server, garbage, None,
         [f"tls_server_config.key_file: {garbage} holds no usable PEM private key (encrypted keys are not supported)"]),
        (pki.server, pki.server_key, garbage,
         [f"tls_server_config.client_ca_file: {garbage} holds no PEM certificate"]),
    ]
    for cert, key, ca, expected in cases:
        extra = f", client_ca_file: {ca}, client_auth_type: VerifyClientCertIfGiven" if ca else ""
        write(tmp_path / "web.yml", f"tls_server_config: {{cert_file: {cert}, key_file: {key}{extra}}}\n")
        with pytest.raises(WebConfigError) as info:
            ExporterServer(("127.0.0.1", 0), None, None, web_config_file=web)
        assert info.value.problems == expected


def test_an_unreadable_or_broken_file(tmp_path):
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(tmp_path / "nope.yml"))
    assert info.value.problems == [f"{tmp_path}/nope.yml: cannot read web config file: No such file or directory"]
    with pytest.raises(WebConfigError) as info:
        load_web_config(write(tmp_path / "web.yml", "basic_auth_users: {a: [\n"))
    assert info.value.problems[0].startswith(f"{tmp_path}/web.yml: invalid YAML (line 2, column 1)")


def test_a_bad_web_config_exits_2_with_its_problems(tmp_path):
    web = write(tmp_path / "web.yml", """\
        tls_server_config: {cert_file: s.crt, client_auth_type: RequireAndVerifyClientCert}
        basic_auth_users: {alice: plain}
        """)
    environ = {**os.environ, "ANTHROPIC_ADMIN_API_KEY": "sk-ant-admin01-test"}
    result = subprocess.run([sys.executable, "-m", "exporter", "--web.config.file", web,
                             "--web.listen-address", "127.0.0.1:0"], capture_output=True, text=True, env=environ,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith(textwrap.dedent(f"""\
        error: invalid web configuration in {web} (3 problems):
          tls_server_config.key_file: missing: TLS needs cert_file and key_file
          tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file, the CA that client certificates are verified against
          basic_auth_users.alice: must be a bcrypt hash such as htpasswd -nBC 10 "" | tr -d ':\\n' prints
        """)), result.stderr



def test_config_check_checks_the_web_config_too(tmp_path):
    web = write(tmp_path / "web.yml", "basic_auth_users: {alice: plain}\n")
    config = write(tmp_path / "config.yml", "poll_intervals: {usage: never}\n")
    environ = {**os.environ, "ANTHROPIC_ADMIN_API_KEY": "sk-ant-admin01-test"}

    def check(*args):
        return subprocess.run([sys.executable, "-m", "exporter", "--config.check", *args], capture_output=True,
                              text=True, env=environ, timeout=60)

    both = check("--web.config.file", web, "--config.file", config)
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr == textwrap.dedent(f"""\
        error: invalid web configuration in {web} (1 problem):
          basic_auth_users.alice: must be a bcrypt hash such as htpasswd -nBC 10 "" | tr -d ':\\n' prints
        error: invalid configuration (1 problem):
          poll_intervals.usage: invalid duration 'never' (expected e.g. 30s, 5m, 1h30m)
        """)
    web_only = check("--web.config.file", web)
    assert web_only.returncode == 2 and web_only.stdout == "" and "basic_auth_users.alice" in web_only.stderr
    good = write(tmp_path / "good.yml", f"basic_auth_users: {{alice: '{HASH}'}}\n")
    fine = check("--web.config.file", good)
    assert fine.returncode == 0 and "organizations:" in fine.stdout and HASH not in fine.stdout + fine.stderr


# --- serving ----------------------------------------------------------------------------------

@pytest.fixture
def serve(tmp_path):
    """serve(web config text) -> base URL of a running exporter (https when the config says TLS)."""
    servers = []
    registry = CollectorRegistry()
    Gauge("webconfig_test", "A sample for the tests.", registry=registry).set(1)

    def start(text: str) -> str:
        web = write(tmp_path / "web.yml", text)
        server = ExporterServer(("127.0.0.1", 0), ExpositionCache(registry, CollectorRegistry(), lambda: 0),
                                ExporterState(["acme"], ()), web_config_file=web, read_timeout=5)
        server.start()
        servers.append(server)
        scheme = "https" if "tls_server_config" in text else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_tls_with_the_right_ca_only(serve, pki):
    url = serve(f"tls_server_config: {{cert_file: {pki.server}, key_file: {pki.server_key}}}\n")
    for path in ("/metrics", "/-/healthy", "/"):
        assert requests.get(url + path, verify=pki.ca, timeout=5).status_code == 200
    assert "webconfig_test 1.0" in requests.get(url + "/metrics", verify=pki.ca, timeout=5).text
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/metrics", verify=pki.other_ca, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url.replace("https", "http") + "/metrics", timeout=5)  # plain HTTP to a TLS port


def test_client_certificates_required_and_verified(serve, pki):
    url = serve(f"""\
        tls_server_config:
          cert_file: {pki.server}
          key_file: {pki.server_key}
          client_ca_file: {pki.ca}
          client_auth_type: RequireAndVerifyClientCert
          min_version: TLS13
        """)
    assert requests.get(url + "/metrics", verify=pki.ca, cert=(pki.client, pki.client_key), timeout=5).ok
    with pytest.raises(requests.exceptions.ConnectionError):  # no certificate: the handshake is refused
        requests.get(url + "/metrics", verify=pki.ca, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):  # one the CA did not sign
        requests.get(url + "/metrics", verify=pki.ca, cert=(pki.other_client, pki.other_client_key), timeout=5)


def test_client_certificates_verified_if_given(serve, pki):
    url = serve(f"""\
        tls_server_config: {{cert_file: {pki.server}, key_file: {pki.server_key}, client_ca_file: {pki.ca},
                             client_auth_type: VerifyClientCertIfGiven}}
        """)
    assert requests.get(url + "/metrics", verify=pki.ca, timeout=5).ok
    assert requests.get(url + "/metrics", verify=pki.ca, cert=(pki.client, pki.client_key), timeout=5).ok
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/metrics", verify=pki.ca, cert=(pki.other_client, pki.other_client_key), timeout=5)


def test_basic_auth_on_every_endpoint_with_the_configured_headers(serve):
    url = serve(f"""\
        basic_auth_users: {{alice: '{HASH}'}}
        http_server_config: {{headers: {{X-Frame-Options: deny, Content-Security-Policy: "default-src 'self'"}}}}
        """)
    for path in ("/metrics", "/-/healthy", "/-/ready", "/", "/nope"):
        for auth in (None, ("alice", "wrong"), ("bob", PASSWORD), ("alice", PASSWORD + "x")):
            response = requests.get(url + path, auth=auth, timeout=5)
            assert response.status_code == 401, (path, auth)
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
            assert response.headers["X-Frame-Options"] == "deny"
    ok = requests.get(url + "/metrics", auth=("alice", PASSWORD), timeout=5)
    assert ok.status_code == 200 and "webconfig_test 1.0" in ok.text
    assert ok.headers["X-Frame-Options"] == "deny"
    assert ok.headers["Content-Security-Policy"] == "default-src 'self'"
    assert requests.get(url + "/-/healthy", auth=("alice", PASSWORD), timeout=5).status_code == 200
    garbled = requests.get(url + "/metrics", headers={"Authorization": "Basic !!!"}, timeout=5)
    assert garbled.status_code == 401


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_verified_password_is_not_hashed_again(monkeypatch):
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda password, hashed: calls.append(1) or real(password, hashed))
    auth = BasicAuth()
    users = {"alice": HASH}
    header = basic("alice", PASSWORD)
    assert auth.check(users, header) and auth.check(users, header)
    assert len(calls) == 1
    wrong = basic("alice", "nope")
    assert not auth.check(users, wrong) and not auth.check(users, wrong)
    assert len(calls) == 3  # failures are not remembered
    assert not auth.check(users, basic("mallory", PASSWORD))
    assert len(calls) == 4  # an unknown user costs a bcrypt all the same
    new_hash = bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()
    assert not auth.check({"alice": new_hash}, header)  # a changed hash: the old password no longer passes
    assert auth.check({"alice": new_hash}, basic("alice", "new"))
    long = "x" * 80  # bcrypt reads 72 bytes; so does Go's, which exporter-toolkit uses
    long_hash = bcrypt.hashpw(long[:72].encode(), bcrypt.gensalt(rounds=4)).decode()
    assert auth.check({"alice": long_hash}, basic("alice", long))


def test_rotated_certificates_are_served_without_a_restart(serve, pki, tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.server, cert)
    shutil.copy(pki.server_key, key)
    url = serve("tls_server_config: {cert_file: tls.crt, key_file: tls.key}\n")  # relative to web.yml
    assert requests.get(url + "/metrics", verify=pki.ca, timeout=5).ok
    # Renewed as cert-manager or a deploy script would: written aside, renamed into place.
    for source, target in ((pki.other_server, cert), (pki.other_server_key, key)):
        shutil.copy(source, str(target) + ".new")
        os.replace(str(target) + ".new", target)
    assert requests.get(url + "/metrics", verify=pki.other_ca, timeout=5).ok
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/metrics", verify=pki.ca, timeout=5)


def test_a_web_config_that_breaks_later_keeps_the_last_good_one(serve, tmp_path, caplog):
    url = serve(f"basic_auth_users: {{alice: '{HASH}'}}\n")
    assert requests.get(url + "/metrics", auth=("alice", PASSWORD), timeout=5).ok
    web = tmp_path / "web.yml"
    with caplog.at_level(logging.INFO, logger="exporter.webconfig"):
        replace_file(web, "basic_auth_users: {alice: plain}\n")
        assert requests.get(url + "/metrics", auth=("alice", PASSWORD), timeout=5).ok
        assert requests.get(url + "/metrics", auth=("alice", PASSWORD), timeout=5).ok
        replace_file(web, "tls_server_config: {cert_file: a.crt, key_file: a.key}\n")
        assert requests.get(url + "/metrics", auth=("alice", PASSWORD), timeout=5).ok
        new_hash = bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()
        replace_file(web, f"basic_auth_users: {{alice: '{new_hash}'}}\n")
        assert requests.get(url + "/metrics", auth=("alice", PASSWORD), timeout=5).status_code == 401
        assert requests.get(url + "/metrics", auth=("alice", "new"), timeout=5).ok
    records = [(r.levelname, r.getMessage(), getattr(r, "problems", None)) for r in caplog.records]
    assert records == [
        ("ERROR", "the web config file does not load; keeping the last good one",
         "basic_auth_users.alice: must be a bcrypt hash such as htpasswd -nBC 10 \"\" | tr -d ':\\n' prints"),
        ("ERROR", "the web config file does not load; keeping the last good one",
         f"tls_server_config.cert_file: cannot read {tmp_path}/a.crt: No such file or directory;"
         f" tls_server_config.key_file: cannot read {tmp_path}/a.key: No such file or directory"),
        ("INFO", "web config file loaded", None),
    ]


def replace_file(path: Path, text: str) -> None:
    """Write aside and rename: a new inode, so the change shows even within one clock tick."""
    Path(str(path) + ".new").write_text(text)
    os.replace(str(path) + ".new", path)


def test_turning_tls_on_needs_a_restart(serve, pki, tmp_path, caplog):
    url = serve("{}\n")
    with caplog.at_level(logging.ERROR, logger="exporter.webconfig"):
        replace_file(tmp_path / "web.yml", f"tls_server_config: {{cert_file: {pki.server}, key_file: {pki.server_key}}}\n")
        assert requests.get(url + "/metrics", timeout=5).ok
    assert [r.getMessage() for r in caplog.records] == [
        "the web config file turns TLS on or off, which needs a restart; keeping the last good one"]


# --- a real Prometheus ------------------------------------------------------------------------

def test_prometheus_scrapes_over_tls_with_basic_auth(serve, pki):
    url = serve(f"""\
        tls_server_config: {{cert_file: {pki.server}, key_file: {pki.server_key}}}
        basic_auth_users: {{prometheus: '{HASH}'}}
        """)
    target = url.removeprefix("https://")

    def job(name: str, password: str) -> dict:
        return {"job_name": name, "scheme": "https", "tls_config": {"ca_file": pki.ca},
                "basic_auth": {"username": "prometheus", "password": password},
                "static_configs": [{"targets": [target]}]}

    prometheus = PrometheusServer([], scrape_configs=[job("right", PASSWORD), job("wrong", "guess")])
    try:
        prometheus.wait_ready()
        assert prometheus.wait_for('webconfig_test{job="right"}')[0]["value"][1] == "1"
        prometheus.wait_for('up{job="wrong"} == 0')
        (wrong,) = [t for t in prometheus.targets() if t["labels"]["job"] == "wrong"]
        assert "401 Unauthorized" in wrong["lastError"]
        assert prometheus.query('up{job="right"}')[0]["value"][1] == "1"
    finally:
        prometheus.stop()
