"""The deployment files: docker-compose.yml and the Dockerfile run commands and settings
that exist. (Docker itself cannot run on our machines.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from recsys.config import Settings

ROOT = Path(__file__).resolve().parents[1]
RECSYS = str(Path(sys.executable).parent / "recsys")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_has_the_services_wired_in_order() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"db", "migrate", "api", "scheduler"}
    assert services["db"]["healthcheck"]["test"] and services["db"]["volumes"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("api", "scheduler"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        assert "artifacts:/var/lib/recsys/artifacts" in services[name]["volumes"]
    assert set(spec["volumes"]) == {"pgdata", "artifacts"}


def test_every_setting_named_exists() -> None:
    fields = set(Settings.model_fields)
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("RECSYS_"):
                assert key.removeprefix("RECSYS_").lower() in fields, (name, key)


def test_every_command_exists_in_the_cli() -> None:
    commands = [s["command"] for s in compose()["services"].values() if "command" in s]
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert cmd is not None
    commands.append(yaml.safe_load(cmd.group(1)))
    assert len(commands) == 4
    for command in commands:
        assert command[0] == "recsys"
        # --help after the real arguments: typer parses them, then prints help, exit 0.
        done = subprocess.run([RECSYS, *command[1:], "--help"], capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)


def test_dockerfile_installs_the_cpu_build_of_torch_first() -> None:
    text = (ROOT / "Dockerfile").read_text()
    torch_line = text.index(
        "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    )
    assert torch_line < text.index("pip install -e .")


def test_compose_file_follows_the_compose_specification() -> None:
    # check-jsonschema ships the Compose specification's JSON schema (compose-spec.json), so
    # this runs offline; a misspelt key or a wrong type in docker-compose.yml fails here.
    checker = str(Path(sys.executable).parent / "check-jsonschema")
    done = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout
