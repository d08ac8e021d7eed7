"""deploy/ as the tests see it: the manifest files, what ``kubectl kustomize`` and ``deploy/install.sh
render`` make of them, and the settings each container is given.

install.sh is the only thing that reads the renders on a user's machine, so the tests render through it
(a copy of deploy/ when a test edits a setting) rather than re-implementing its choices.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from stats_log_collector.cli import COMMANDS, Command
from stats_log_collector.config import SettingSpec, spec_of

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
MANIFEST_FILES = (
    "base/deployment.yaml",
    "base/virtlet-log-ds.yaml",
    "components/procfs/memstat-procfs-ds.yaml",
    "base/rbac.yaml",
)
OVERLAYS = ("default", "openshift", "procfs", "monitoring")
COMPONENTS = ("procfs", "monitoring", "exec-source", "kubelet-proxy")
KUBECTL = shutil.which("kubectl")
WORKLOAD_KINDS = ("Deployment", "DaemonSet")

Obj = dict[str, Any]


def load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest(name: str) -> list[Obj]:
    return load(DEPLOY / name)


def all_manifest_objects() -> list[tuple[str, Obj]]:
    return [(name, obj) for name in MANIFEST_FILES for obj in manifest(name)]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind and name in (None, obj["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def workloads() -> Iterator[tuple[str, Obj]]:
    for name, obj in all_manifest_objects():
        if obj["kind"] in WORKLOAD_KINDS:
            yield name, obj


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def command_of(container: Obj) -> Command[Any]:
    """The subcommand a container runs (its first argument), hence the settings it reads."""
    name = container["args"][0]
    return next(command for command in COMMANDS if command.name == name)


def settings_of(command: Command[Any]) -> dict[str, tuple[dataclasses.Field[Any], SettingSpec]]:
    """Environment variable (and each alias) -> (field, spec) for every setting the subcommand reads."""
    found: dict[str, tuple[dataclasses.Field[Any], SettingSpec]] = {}
    for group in command.groups:
        for field in dataclasses.fields(group):
            spec = spec_of(field)
            if not spec.flag_only:
                found.update(dict.fromkeys(spec.variables, (field, spec)))
    return found


def env_values(container: Obj) -> dict[str, str]:
    """The container's literal ``env`` values (entries filled from the downward API are left out)."""
    return {entry["name"]: entry["value"] for entry in container.get("env", []) if "value" in entry}


# ---- install.sh -------------------------------------------------------------------------------------


def copy_deploy(target: Path, edits: Mapping[tuple[str, str, str], str] = {}) -> Path:
    """A copy of deploy/ with some env values changed: ``{(file, container, VAR): value}``."""
    shutil.copytree(DEPLOY, target)
    for (file, container, variable), value in edits.items():
        set_env(target / file, container, variable, value)
    return target


def set_env(path: Path, container: str, variable: str, value: str) -> None:
    """Change one env value in place, keeping the file's layout (install.sh reads the text)."""
    lines = path.read_text().splitlines(keepends=True)
    current: str | None = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("- name: ") and line.startswith("        - name: "):
            current = stripped.removeprefix("- name: ")
        if current == container and stripped.split("#")[0].strip() == f"- name: {variable}":
            indent = line[: len(line) - len(line.lstrip())]
            lines[index + 1] = f"{indent}  value: {yaml.safe_dump(value).splitlines()[0]}\n"
            path.write_text("".join(lines))
            return
    raise AssertionError(f"{path.name}: no {variable} in container {container}")


def install_sh(deploy: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "INSTALL_NAMESPACE": "stats-log-collector", **env}
    return subprocess.run(
        ["sh", str(deploy / "install.sh"), *args], capture_output=True, text=True, env=environ, timeout=60
    )


def kustomize(directory: Path) -> list[Obj]:
    """``kubectl kustomize`` of an overlay or component folder, as kubectl itself renders it."""
    assert KUBECTL is not None, "kubectl is not installed"
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render(deploy: Path = DEPLOY, **env: str) -> list[Obj]:
    result = install_sh(deploy, "render", **env)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def plan(deploy: Path = DEPLOY, **env: str) -> list[tuple[str, str, str]]:
    result = install_sh(deploy, "plan", **env)
    assert result.returncode == 0, result.stderr
    return [(sa, role, scope) for sa, role, scope in (line.split() for line in result.stdout.splitlines())]
