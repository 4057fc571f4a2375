"""The App Platform spec we ship (.do/app.yaml) configures hotreload as its settings model reads it.

Every variable it sets is a setting hotreload knows, the values are valid together (with the
secrets App Platform fills in), secrets are marked SECRET, and the ports and health check are
those of the image.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from producer.settings import ConfigError, Settings, load_settings
from tests.conftest import ROOT

SPEC = ROOT / ".do" / "app.yaml"


def service() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC.read_text())
    (only,) = spec["services"]
    return only


def secret_fields() -> set[str]:
    return {
        name
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation) or re.search(r"TOKEN|SECRET|PASSWORD", name)
    }


def test_every_variable_of_the_spec_is_a_setting_hotreload_knows():
    keys = [env["key"] for env in service()["envs"]]
    unknown = sorted(set(keys) - set(Settings.model_fields))
    assert not unknown, f".do/app.yaml sets variables hotreload does not read: {unknown}"
    assert len(keys) == len(set(keys)), "a variable is set twice"


def test_the_spec_s_values_are_valid_together_with_the_secrets_filled_in():
    environ = {}
    for env in service()["envs"]:
        environ[env["key"]] = env.get("value", f"filled-in-{env['key'].lower()}")
    try:
        settings = load_settings(environ)
    except ConfigError as error:  # pragma: no cover - the message is the point
        pytest.fail(f".do/app.yaml does not validate:\n{error}")
    assert service()["health_check"]["port"] == settings.DEV_HEALTH_PORT


def test_secrets_are_marked_secret_and_only_secrets_are():
    envs = service()["envs"]
    marked = {env["key"] for env in envs if env.get("type") == "SECRET"}
    assert marked == {env["key"] for env in envs} & secret_fields()
    assert all("value" not in env for env in envs if env["key"] in marked), (
        "a secret value is written in the spec"
    )


def test_the_ports_and_health_check_are_the_image_s():
    svc = service()
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert exposed is not None
    ports = {int(port) for port in exposed.group(1).split()}
    assert svc["http_port"] in ports and svc["health_check"]["port"] in ports
    assert svc["health_check"]["http_path"] == "/dev_health"
    assert svc["health_check"]["port"] in svc["internal_ports"]
