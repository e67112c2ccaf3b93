"""docker/: both compose files are valid Compose, and the production one agrees with the code it runs.

No Docker engine here (nor in CI): the files are read as YAML, interpolated as Compose would with
every variable unset (`${X:-default}` takes its default), and validated against the Compose
Specification's JSON schema that check-jsonschema vendors (Apache-2.0, from compose-spec/
compose-spec; no download at test time). Then the checks Compose cannot make: health checks ask
routes the API serves, grace periods cover the drains, secrets are files the settings read, the
Caddyfile's upstreams are the API replicas and its health check is /ready.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from notifq.api.routes import OPERATIONS
from notifq.cli import GRACEFUL_SHUTDOWN_SECONDS
from notifq.settings import ENV_VARS, FILE_VARS, Settings
from notifq.worker.main import CANCEL_WAIT_SECONDS

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE_FILES = ("compose.yaml", "compose.prod.yaml")
MARGIN_SECONDS = 5
NOTIFQ_COMMANDS = {"api", "worker", "migrate"}
OTHER_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")

Service = dict[str, Any]


@pytest.fixture(autouse=True)
def clean() -> None:
    """Files only: no PostgreSQL or Redis to empty (overrides conftest's autouse `clean`)."""


def _interpolated(value: Any) -> Any:
    """Compose's interpolation with nothing set: `${X:-d}` and `${X-d}` give d, `${X:?e}` a placeholder."""
    if isinstance(value, dict):
        return {k: _interpolated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolated(v) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return {"-": match["arg"], ":-": match["arg"], "?": "set", ":?": "set"}.get(match["op"] or "", "")

    return _VARIABLE.sub(one, value)


def _load(name: str) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((DOCKER / name).read_text())  # merge keys (`<<: *x`) resolved here
    return raw


def _compose(name: str) -> dict[str, Any]:
    data: dict[str, Any] = _interpolated(_load(name))
    return data


def _seconds(duration: str) -> float:
    """A Compose duration (`1m30s`, `45s`, `500ms`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def _notifq(compose: dict[str, Any]) -> dict[str, Service]:
    """The services that run notifq, by the command they run."""
    return {name: s for name, s in compose["services"].items()
            if s.get("command", [None])[0] == "notifq"}  # fmt: skip


def _env(service: Service) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _schema() -> dict[str, Any]:
    text = (resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_compose_file_is_valid_compose(name: str) -> None:
    """As written (variables unexpanded) and as Compose sees it with nothing set."""
    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    for variant, data in (("as written", _load(name)), ("interpolated", _compose(name))):
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
        assert not errors, f"{name} ({variant}): " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])  # fmt: skip


def test_the_production_file_runs_every_part_of_notifq() -> None:
    compose = _compose("compose.prod.yaml")
    services = compose["services"]
    notifq = _notifq(compose)
    commands = {name: s["command"][1] for name, s in notifq.items()}
    assert set(commands.values()) == NOTIFQ_COMMANDS
    apis = sorted(n for n, c in commands.items() if c == "api")
    assert len(apis) >= 2, "several API replicas behind the proxy"
    assert {"caddy", "postgres", "redis"} <= set(services)
    for name, service in notifq.items():
        if commands[name] == "migrate":
            assert service["restart"] == "no"
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        else:
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
            assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
            assert service["restart"] == "unless-stopped" and service.get("init") is True, name
            assert "ports" not in service, f"{name}: only Caddy is published"
    assert sorted(services["caddy"]["depends_on"]) == apis


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_health_checks_ask_routes_the_api_serves(name: str) -> None:
    served = {op.path for op in OPERATIONS if op.method == "GET" and op.public}
    compose = _compose(name)
    for service_name, service in _notifq(compose).items():
        if service["command"][1] != "api":
            continue
        probe = " ".join(service["healthcheck"]["test"])
        paths = re.findall(rf"http://127\.0\.0\.1:{Settings().port}(/[\w/]*)", probe)
        assert paths and set(paths) <= served, (service_name, probe)


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_stop_grace_periods_cover_the_drains(name: str) -> None:
    """Docker kills what is still running after stop_grace_period: it must cover each process's own stop."""
    for service_name, service in _notifq(_compose(name)).items():
        role, env = service["command"][1], _env(service)
        grace = _seconds(service.get("stop_grace_period", "10s"))
        if role == "worker":
            drain = float(env.get("NOTIFQ_WORKER_DRAIN_SECONDS") or Settings().worker_drain_seconds)
            assert grace >= drain + CANCEL_WAIT_SECONDS + MARGIN_SECONDS, (service_name, grace, drain)
        elif role == "api":
            assert grace >= GRACEFUL_SHUTDOWN_SECONDS + MARGIN_SECONDS, (service_name, grace)


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_environments_name_real_settings(name: str) -> None:
    known = set(ENV_VARS.values()) | set(FILE_VARS.values()) | OTHER_VARIABLES
    for service_name, service in _notifq(_compose(name)).items():
        unknown = set(_env(service)) - known
        assert not unknown, f"{service_name}: {unknown} are not notifq settings"


def test_production_secrets_are_files_the_settings_read() -> None:
    """Each `*_FILE` names a secret the service mounts; no secret value sits in the environment."""
    compose = _compose("compose.prod.yaml")
    declared = compose["secrets"]
    secret_names = {ENV_VARS[n] for n in FILE_VARS} - {"REDIS_URL", "DATABASE_URL"}
    for service_name, service in _notifq(compose).items():
        env, mounted = _env(service), set(service.get("secrets", []))
        assert not secret_names & set(env), f"{service_name}: a secret in the environment"
        assert env.get("DATABASE_URL_FILE") and "DATABASE_URL" not in env, service_name
        for variable, path in env.items():
            if variable not in FILE_VARS.values():
                continue
            secret = path.removeprefix("/run/secrets/")
            assert path.startswith("/run/secrets/") and secret in mounted, (service_name, variable, path)
            assert variable.removesuffix("_FILE") not in env, f"{service_name}: {variable} and its value both set"
        if service["command"][1] != "migrate":
            assert "NOTIFQ_JWT_SECRET_FILE" in env, service_name  # workers sign unsubscribe links with it
    for name, secret in declared.items():
        assert secret["file"].startswith("./secrets/"), name
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    ignored = (DOCKER.parent / ".gitignore").read_text().splitlines()
    assert "docker/secrets/" in ignored, "the secret files must never be committed"


def _caddy_proxy(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The upstreams of the Caddyfile's reverse_proxy, and its subdirectives."""
    match = re.search(r"^\s*reverse_proxy ([^{\n]+)\{\n(.*?)^\s*\}\s*$", text, re.M | re.S)
    assert match, "no reverse_proxy block"
    options: dict[str, list[str]] = {}
    for line in match[2].splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[-1] != "{" and words[0] != "}":
            options[words[0]] = words[1:]
    return match[1].split(), options


def test_caddy_balances_over_every_replica_and_checks_readiness() -> None:
    compose = _compose("compose.prod.yaml")
    upstreams, options = _caddy_proxy((DOCKER / "Caddyfile").read_text())
    apis = sorted(n for n, s in _notifq(compose).items() if s["command"][1] == "api")
    assert sorted(upstreams) == [f"{api}:{Settings().port}" for api in apis]
    served = {op.path for op in OPERATIONS if op.method == "GET" and op.public}
    assert options["health_uri"] == ["/ready"] and "/ready" in served
    # /ready gives each of its checks 2 s: Caddy must wait longer before calling a replica down.
    assert _seconds(options["health_timeout"][0]) > 2
    assert options["lb_policy"] and options["lb_try_duration"]
    caddy = compose["services"]["caddy"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    trusted = {_env(s)["NOTIFQ_TRUSTED_PROXIES"] for n, s in _notifq(compose).items() if n in apis}
    assert trusted == {caddy["networks"]["edge"]["ipv4_address"]}, "the API believes Caddy's X-Forwarded-For only"
