"""Web configuration (``--web.config.file``): TLS, basic auth and response headers, in exporter-toolkit's format.

The format is the one node_exporter and blackbox_exporter read. The file is parsed strictly,
every problem reported at once with its path. A running server asks ``WebConfigWatcher.current()``
on every connection and request; the file and the certificate files it names are read again only
when one of them changed, and a version that does not load is logged and skipped, so the last
good one stays in force.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import logging
import os
import re
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import yaml

from exporter.yamldoc import DocumentReader

log = logging.getLogger(__name__)

INSTALL_BCRYPT = "pip install 'anthropic-usage-exporter[web]'"

# exporter-toolkit's values; Python's ssl module cannot ask for a client certificate without
# verifying it, so the two that require an unverified one are refused (the toolkit's own
# documentation calls every value but RequireAndVerifyClientCert insecure).
CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
                     "RequireAndVerifyClientCert")
_UNVERIFIED_REQUIRED = ("RequireAnyClientCert", "RequireClientCert")  # the second: the toolkit's old name
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

# The response headers exporter-toolkit lets a web config set, with the values it accepts
# (None: any). Anything else is refused, for consistency across the Prometheus ecosystem.
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

# Keys of the format this exporter does not implement: refused with the reason rather than
# silently ignored, since each would weaken what the file asks for.
_UNSUPPORTED = {
    "rate_limit": "not supported by this exporter (--web.max-requests caps concurrent scrapes)",
    "tls_server_config.cert": "inline certificates are not supported: use cert_file",
    "tls_server_config.key": "inline keys are not supported: use key_file",
    "tls_server_config.client_ca": "inline CA certificates are not supported: use client_ca_file",
    "tls_server_config.client_allowed_sans": "not supported by this exporter",
    "tls_server_config.cipher_suites": "not supported by this exporter (OpenSSL's defaults apply)",
    "tls_server_config.curve_preferences": "not supported by this exporter (OpenSSL's defaults apply)",
    "tls_server_config.prefer_server_cipher_suites": "not supported by this exporter",
}
_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version")
_HTTP_KEYS = ("headers", "http2")
_BCRYPT_HASH_RE = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")
_BCRYPT_MAX_PASSWORD = 72  # bcrypt reads no further; Go's bcrypt, which the toolkit uses, ignores the rest


class WebConfigError(Exception):
    """Every problem found in a web configuration, each naming its path."""

    def __init__(self, path: str, problems: list[str]):
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__("\n".join([f"invalid web configuration in {path} ({count}):",
                                    *(f"  {p}" for p in problems)]))
        self.path = path
        self.problems = problems


@dataclass(frozen=True)
class TLSSettings:
    """File names as opened: relative ones are joined to the web config file's directory."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    def files(self) -> tuple[str, ...]:
        return (self.cert_file, self.key_file, *((self.client_ca_file,) if self.client_ca_file else ()))


@dataclass(frozen=True)
class WebConfig:
    tls: TLSSettings | None = None
    # user → bcrypt hash; the hashes are secrets too (an offline attack needs only them).
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: tuple[tuple[str, str], ...] = ()


def load_web_config(path: str) -> WebConfig:
    """Read and validate a web config file; raises WebConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise WebConfigError(path, [f"{path}: cannot read web config file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise WebConfigError(path, [f"{path}: web config file is not UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise WebConfigError(path, [f"{path}: invalid YAML{where}: {problem}"]) from None
    return parse_web_config(data, os.path.dirname(path), path)


def parse_web_config(data: Any, base_dir: str = "", source: str = "<web config>") -> WebConfig:
    """Validate a decoded document; relative file names are taken from ``base_dir``."""
    parser = _Parser(base_dir)
    config = parser.config(data)
    if parser.problems:
        raise WebConfigError(source, parser.problems)
    return config


class _Parser(DocumentReader):
    top = "web config"

    def __init__(self, base_dir: str):
        super().__init__()
        self.base_dir = base_dir

    def describe(self, value: Any) -> str:
        return _kind(value)

    def unknown_key(self, where: str, allowed: tuple[str, ...]) -> str:
        return _UNSUPPORTED.get(where) or super().unknown_key(where, allowed)

    def config(self, data: Any) -> WebConfig:
        top = self.mapping(data, "", _TOP_KEYS)
        return WebConfig(self.tls(top.get("tls_server_config")), self.users(top.get("basic_auth_users")),
                         self.http(top.get("http_server_config")))

    def file(self, value: Any, path: str) -> str | None:
        name = self.string(value, path)
        return None if name is None else os.path.join(self.base_dir, name)

    def choice(self, value: Any, path: str, choices: tuple[str, ...], default: str) -> str | None:
        if value is None:
            return default
        if value not in choices:
            self.problem(path, f"must be one of {', '.join(choices)}, got {value!r}")
            return None
        return str(value)

    def tls(self, value: Any) -> TLSSettings | None:
        fields = self.mapping(value, "tls_server_config", _TLS_KEYS)
        # As in exporter-toolkit: any of these turns TLS on; min/max_version alone do not.
        if not any(fields.get(k) is not None for k in ("cert_file", "key_file", "client_ca_file",
                                                        "client_auth_type")):
            return None
        cert = key = None
        for name in ("cert_file", "key_file"):
            if fields.get(name) is None:
                self.problem(f"tls_server_config.{name}", "missing: TLS needs cert_file and key_file")
            elif name == "cert_file":
                cert = self.file(fields[name], "tls_server_config.cert_file")
            else:
                key = self.file(fields[name], "tls_server_config.key_file")
        ca = self.file(fields["client_ca_file"], "tls_server_config.client_ca_file") \
            if fields.get("client_ca_file") is not None else None
        auth = self.client_auth(fields.get("client_auth_type"), ca is not None or "client_ca_file" in fields)
        versions = tuple(TLS_VERSIONS)
        low = self.version(fields.get("min_version"), "tls_server_config.min_version", versions, "TLS12")
        high = self.version(fields.get("max_version"), "tls_server_config.max_version", versions, "TLS13")
        if low and high and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
            self.problem("tls_server_config", f"min_version {low} is above max_version {high}")
        if cert is None or key is None or auth is None or low is None or high is None:
            return None
        return TLSSettings(cert, key, ca, auth, low, high)

    def client_auth(self, value: Any, has_ca: bool) -> str | None:
        path = "tls_server_config.client_auth_type"
        if value in _UNVERIFIED_REQUIRED:
            self.problem(path, f"{value} (a certificate required but not verified) is not supported:"
                               " use RequireAndVerifyClientCert with client_ca_file")
            return None
        auth = self.choice(value, path, CLIENT_AUTH_TYPES, "NoClientCert")
        if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not has_ca:
            self.problem(path, f"{auth} needs client_ca_file, the CA that client certificates are verified against")
        elif auth == "NoClientCert" and has_ca:
            self.problem("tls_server_config.client_ca_file",
                         "set, but client_auth_type is NoClientCert: set client_auth_type to"
                         " RequireAndVerifyClientCert to require client certificates")
        return auth

    def version(self, value: Any, path: str, versions: tuple[str, ...], default: str) -> str | None:
        if value in ("TLS10", "TLS11"):
            self.problem(path, f"{value} is not supported (deprecated by RFC 8996): use TLS12 or TLS13")
            return None
        return self.choice(value, path, versions, default)

    def users(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem("basic_auth_users", f"must be a mapping of user names to bcrypt hashes, got {_kind(value)}")
            return {}
        users: dict[str, str] = {}
        for user, hashed in value.items():
            if not isinstance(user, str):
                self.problem("basic_auth_users", f"user name {user!r} must be a string (quote it)")
                continue
            path = f"basic_auth_users.{user}"
            if ":" in user:
                self.problem(path, "a user name cannot hold ':' (basic auth separates the password with it)")
            # The hash is never quoted back: it is a secret too.
            elif not isinstance(hashed, str) or not _BCRYPT_HASH_RE.match(hashed):
                self.problem(path, "must be a bcrypt hash such as htpasswd -nBC 10 \"\" | tr -d ':\\n' prints")
            else:
                users[user] = hashed
        if users and _bcrypt() is None:
            self.problem("basic_auth_users", f"checking passwords needs the bcrypt package: {INSTALL_BCRYPT}")
        return users

    def http(self, value: Any) -> tuple[tuple[str, str], ...]:
        fields = self.mapping(value, "http_server_config", _HTTP_KEYS)
        # http2 is accepted for compatibility; the exporter serves HTTP/1.1 only, which every
        # client falls back to.
        if fields.get("http2") is not None and not isinstance(fields["http2"], bool):
            self.problem("http_server_config.http2", f"must be true or false, got {_kind(fields['http2'])}")
        headers = fields.get("headers")
        if headers is None:
            return ()
        if not isinstance(headers, dict):
            self.problem("http_server_config.headers", f"must be a mapping, got {_kind(headers)}")
            return ()
        result = []
        for name, header_value in headers.items():
            path = f"http_server_config.headers.{name}"
            if name not in ALLOWED_HEADERS:
                self.problem(path, f"this header cannot be configured (allowed: {', '.join(ALLOWED_HEADERS)})")
            elif not isinstance(header_value, str) or "\n" in header_value or "\r" in header_value:
                self.problem(path, f"must be a one-line string, got {_kind(header_value)}")
            elif header_value == "":
                continue  # the toolkit: unset if blank
            elif (allowed := ALLOWED_HEADERS[name]) is not None and header_value not in allowed:
                self.problem(path, f"must be one of {', '.join(allowed)}, got {header_value!r}")
            else:
                result.append((str(name), header_value))
        return tuple(result)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _bcrypt() -> ModuleType | None:
    """The optional ``bcrypt`` package (the ``web`` extra), or None when it is not installed."""
    try:
        return importlib.import_module("bcrypt")
    except ImportError:
        return None


def build_ssl_context(tls: TLSSettings, source: str = "<web config>") -> ssl.SSLContext:
    """A server context for ``tls``; raises WebConfigError naming each unusable file."""
    problems: list[str] = []
    texts: dict[str, bytes] = {}
    named = (("cert_file", tls.cert_file), ("key_file", tls.key_file), ("client_ca_file", tls.client_ca_file))
    for name, path in named:
        if path is None:
            continue
        try:
            with open(path, "rb") as fh:
                texts[name] = fh.read()
        except OSError as exc:
            problems.append(f"tls_server_config.{name}: cannot read {path}: {exc.strerror}")
    if problems:
        raise WebConfigError(source, problems)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if not _holds_certificates(texts["cert_file"]):
        problems.append(f"tls_server_config.cert_file: {tls.cert_file} holds no PEM certificate")
    else:
        try:
            # An empty password: an encrypted key fails here instead of prompting on the terminal.
            context.load_cert_chain(tls.cert_file, tls.key_file, password=b"")
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                problems.append(f"tls_server_config.key_file: {tls.key_file} is not the key of the certificate"
                                f" in {tls.cert_file}")
            else:
                problems.append(f"tls_server_config.key_file: {tls.key_file} holds no usable PEM private key"
                                " (encrypted keys are not supported)")
        except OSError as exc:  # the file went away since it was read
            problems.append(f"tls_server_config: cannot load {tls.cert_file} and {tls.key_file}: {exc.strerror}")
    if tls.client_ca_file is not None and tls.client_auth_type != "RequestClientCert":
        if not _holds_certificates(texts["client_ca_file"]):
            problems.append(f"tls_server_config.client_ca_file: {tls.client_ca_file} holds no PEM certificate")
        else:
            context.load_verify_locations(cadata=texts["client_ca_file"].decode("ascii"))
            context.verify_mode = (ssl.CERT_REQUIRED if tls.client_auth_type == "RequireAndVerifyClientCert"
                                   else ssl.CERT_OPTIONAL)
    # RequestClientCert asks for a certificate that nothing then checks; Python cannot accept
    # an unverified one, and the exporter uses none, so no certificate is asked for.
    if problems:
        raise WebConfigError(source, problems)
    return context


def _holds_certificates(pem: bytes) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        return False
    return True


class BasicAuth:
    """Checks ``Authorization: Basic`` credentials against bcrypt hashes.

    bcrypt is slow on purpose (tens of milliseconds at cost 10), so a success is remembered,
    per user, as a salted SHA-256 of the password next to the hash it matched, and the next
    request with the same password costs one SHA-256 and a constant-time comparison. bcrypt
    itself runs one call at a time, like exporter-toolkit, so wrong passwords cannot take
    every core. An unknown user is checked against a real hash all the same, so the time
    taken does not tell which users exist.
    """

    def __init__(self) -> None:
        self._salt = os.urandom(16)  # per process: the cache never holds a plain password hash
        self._verified: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    def check(self, users: Mapping[str, str], authorization: str | None) -> bool:
        credentials = _parse_basic(authorization)
        if credentials is None or not users:
            return False
        user, password = credentials
        hashed = users.get(user)
        digest = hashlib.sha256(self._salt + user.encode() + b"\0" + password).digest()
        with self._lock:
            cached = self._verified.get(user)
        if hashed is not None and cached is not None and cached[0] == hashed and hmac.compare_digest(cached[1], digest):
            return True
        bcrypt = _bcrypt()
        if bcrypt is None:  # parse_web_config refuses users without bcrypt; uninstalled since
            log.error("basic auth needs the bcrypt package", extra={"install": INSTALL_BCRYPT})
            return False
        with self._bcrypt_lock:
            try:
                ok = bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD],
                                    (hashed if hashed is not None else next(iter(users.values()))).encode())
            except ValueError:
                ok = False
        if ok and hashed is not None:
            with self._lock:
                self._verified[user] = (hashed, digest)
            return True
        return False


def _parse_basic(authorization: str | None) -> tuple[str, bytes] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, sep, password = decoded.partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class ActiveWebConfig:
    """The web config in force, with its TLS context built (None: plain HTTP)."""

    config: WebConfig
    ssl_context: ssl.SSLContext | None


class WebConfigWatcher:
    """The web config file in force, re-read when it or a file it names changes.

    ``current()`` costs a few ``stat`` calls; the files are read again only when one of them
    changed its modification time, size or inode (a certificate renewed in place or swapped in
    by a rename). A version that fails to load is logged once and the last good one is kept;
    so is one that would turn TLS on or off, which only a restart can do. Raises
    WebConfigError if the file does not load at start.
    """

    def __init__(self, path: str, stat: Callable[[str], os.stat_result] = os.stat):
        self.path = path
        self._stat = stat
        self._lock = threading.Lock()
        self.auth = BasicAuth()
        self._files: tuple[str, ...] = (path,)
        self._signature = self._sign(self._files)
        self._active = self._load()

    def current(self) -> ActiveWebConfig:
        with self._lock:
            if self._sign(self._files) != self._signature:
                self._reload()
            return self._active

    def _load(self) -> ActiveWebConfig:
        # Each file is signed before it is read: a change while reading shows next time.
        signature = self._sign((self.path,))
        config = load_web_config(self.path)
        tls_files = config.tls.files() if config.tls else ()
        self._files, self._signature = (self.path, *tls_files), signature + self._sign(tls_files)
        return ActiveWebConfig(config, build_ssl_context(config.tls, self.path) if config.tls else None)

    def _sign(self, files: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
        signature: list[tuple[int, ...]] = []
        for name in files:
            try:
                st = self._stat(name)
                signature.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError as exc:
                signature.append((-1, exc.errno or 0))
        return tuple(signature)

    def _reload(self) -> None:
        self._signature = self._sign(self._files)  # a version that fails is not retried until the next change
        try:
            active = self._load()
        except WebConfigError as exc:
            log.error("the web config file does not load; keeping the last good one",
                      extra={"file": self.path, "problems": "; ".join(exc.problems)})
            return
        if (active.ssl_context is None) != (self._active.ssl_context is None):
            log.error("the web config file turns TLS on or off, which needs a restart; keeping the last good one",
                      extra={"file": self.path})
            return
        self._active = active
        log.info("web config file loaded", extra={"file": self.path, "tls": active.ssl_context is not None,
                                                  "basic_auth_users": len(active.config.users)})
