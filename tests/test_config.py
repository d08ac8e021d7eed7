"""Settings resolution: flag > environment > default, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stats_log_collector import config
from stats_log_collector.config import ConfigError, load
from stats_log_collector.settings import LogsCollectorSettings, MemstatSettings, VirtletLogSettings


def test_defaults_apply_when_nothing_is_given(tmp_path: Path) -> None:
    settings = load(MemstatSettings, {"data_dir": str(tmp_path)}, {})
    assert settings.poll_interval_secs == 5
    assert settings.http_port == 8099
    assert settings.namespace == ("default",)
    assert settings.memstat_source == "kubelet"
    assert settings.logs_dir == tmp_path / "logs"  # derived from DATA_DIR


def test_variable_beats_default_and_flag_beats_variable(tmp_path: Path) -> None:
    env = {"POLL_INTERVAL_SECS": "7", "HTTP_PORT": "9000", "DATA_DIR": str(tmp_path)}
    settings = load(MemstatSettings, {"http_port": "9100"}, env)
    assert settings.poll_interval_secs == 7
    assert settings.http_port == 9100


def test_same_variable_has_each_components_default(tmp_path: Path) -> None:
    memstat = dataclasses.fields(MemstatSettings)[0]
    collector = dataclasses.fields(LogsCollectorSettings)[0]
    assert memstat.default == Path("/data")
    assert collector.default == Path("/logs-collector")


@pytest.mark.parametrize(
    ("env", "variable", "problem"),
    [
        ({"POLL_INTERVAL_SECS": "abc"}, "POLL_INTERVAL_SECS", "must be an integer"),
        ({"POLL_INTERVAL_SECS": "-3"}, "POLL_INTERVAL_SECS", "must be a positive integer"),
        ({"POLL_INTERVAL_SECS": "0"}, "POLL_INTERVAL_SECS", "must be a positive integer"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT", "must be a port number"),
        ({"HTTP_PORT": "0"}, "HTTP_PORT", "must be a port number"),
        ({"MEMSTAT_SOURCE": "snmp"}, "MEMSTAT_SOURCE", "must be one of kubelet, exec, procfs"),
        ({"CSV_FORMAT": "xml"}, "CSV_FORMAT", "must be one of standard, legacy"),
        ({"NAMESPACE": "Bad_Name"}, "NAMESPACE", "is not a valid namespace name"),
        ({"MAX_CSV_BYTES": "lots"}, "MAX_CSV_BYTES", "must be a size"),
    ],
)
def test_bad_values_name_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(MemstatSettings, {}, {"DATA_DIR": str(tmp_path), **env})
    assert info.value.variable == variable
    assert problem in info.value.problem
    assert "\n" not in str(info.value)


def test_bad_flag_value_names_the_variable_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^LOG_FORMAT: must be one of json, cri"):
        load(VirtletLogSettings, {"log_format": "xml", "state_dir": str(tmp_path)}, {})


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as info:
        load(MemstatSettings, {}, {"DATA_DIR": str(blocker / "sub")})
    assert info.value.variable == "DATA_DIR"
    assert "cannot create directory" in info.value.problem


def test_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    load(VirtletLogSettings, {}, {"STATE_DIR": str(target)})
    assert target.is_dir()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1073741824", 1073741824),
        ("1GiB", 1024**3),
        ("10Gi", 10 * 1024**3),
        ("500MB", 500_000_000),
        ("64k", 64_000),
        ("2 MiB", 2 * 1024**2),
        ("7b", 7),
    ],
)
def test_byte_sizes(raw: str, expected: int) -> None:
    assert config.byte_size(raw) == expected


@pytest.mark.parametrize("raw", ["", "-1", "1.5G", "0", "12 parsecs"])
def test_bad_byte_sizes(raw: str) -> None:
    with pytest.raises(ValueError):
        config.byte_size(raw)


def test_namespaces_list_and_all() -> None:
    assert config.namespaces("a,b , c") == ("a", "b", "c")
    assert config.namespaces("*") == ("*",)
    with pytest.raises(ValueError):
        config.namespaces(",")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("Yes", True), ("false", False), ("0", False), ("", False)],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert config.boolean(raw) is expected


def test_bad_boolean() -> None:
    with pytest.raises(ValueError, match="true or false"):
        config.boolean("maybe")


def test_optional_port_off() -> None:
    assert config.optional_port("0") == 0
    assert config.optional_port("9100") == 9100


def test_handler_namespace_prefers_hco(tmp_path: Path) -> None:
    plain = load(LogsCollectorSettings, {"data_dir": str(tmp_path)}, {})
    assert plain.handler_namespace == "kubevirt"
    hco = load(
        LogsCollectorSettings, {"data_dir": str(tmp_path)}, {"HCO_NAMESPACE": "kubevirt-hyperconverged"}
    )
    assert hco.handler_namespace == "kubevirt-hyperconverged"


# VIRTLET_VM_LOGS: the name Virtlet's own virtlet-log read the console folder by (Mirantis/virtlet v0.8.2,
# cmd/virtlet_log/virtlet_log.go: main).
@pytest.mark.parametrize(
    "env",
    [
        {"VIRTLET_VM_LOG_LOCATION": "/var/log/virtlet/vms"},
        {"VIRTLET_VM_LOGS": "/var/log/virtlet/vms"},
        {"VIRTLET_VM_LOG_LOCATION": "/var/log/virtlet/vms", "VIRTLET_VM_LOGS": "/var/log/virtlet/vms"},
    ],
)
def test_a_setting_answers_to_its_alias(tmp_path: Path, env: dict[str, str]) -> None:
    settings = load(VirtletLogSettings, {"state_dir": str(tmp_path)}, env)
    assert settings.virtlet_vm_log_location == "/var/log/virtlet/vms"


def test_alias_and_name_that_disagree_name_both(tmp_path: Path) -> None:
    env = {"VIRTLET_VM_LOG_LOCATION": "/var/log/vms", "VIRTLET_VM_LOGS": "/var/log/virtlet/vms"}
    with pytest.raises(ConfigError) as info:
        load(VirtletLogSettings, {"state_dir": str(tmp_path)}, env)
    message = str(info.value)
    assert message.startswith("VIRTLET_VM_LOG_LOCATION and VIRTLET_VM_LOGS: ")
    assert "'/var/log/vms'" in message and "'/var/log/virtlet/vms'" in message
    assert "\n" not in message


def test_the_flag_wins_over_name_and_alias(tmp_path: Path) -> None:
    env = {"VIRTLET_VM_LOG_LOCATION": "/a", "VIRTLET_VM_LOGS": "/b"}  # disagree, but the flag decides
    flags = {"state_dir": str(tmp_path), "virtlet_vm_log_location": "/c"}
    assert load(VirtletLogSettings, flags, env).virtlet_vm_log_location == "/c"


def test_a_bad_value_under_the_alias_names_the_alias() -> None:
    @dataclasses.dataclass(frozen=True)
    class Group:
        period: int = config.setting("PERIOD_SECS", 5, "a period", config.positive_int, aliases=("PERIOD",))

    assert load(Group, {}, {"PERIOD": "7"}).period == 7
    assert load(Group, {}, {"PERIOD": "7", "PERIOD_SECS": "07"}).period == 7  # equal once parsed
    with pytest.raises(ConfigError, match=r"^PERIOD: must be an integer"):
        load(Group, {}, {"PERIOD": "soon"})
    spec = config.spec_of(dataclasses.fields(Group)[0])
    assert spec.variables == ("PERIOD_SECS", "PERIOD")
    assert spec.source == "env PERIOD_SECS or PERIOD"


# ---- settings that parse but cannot work: real processes, one line, exit code 2 -------------------


def run_component(tmp_path: Path, component: str, **env: str) -> tuple[int, list[str]]:
    environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    environ.update({"HOME": str(tmp_path), **env})
    done = subprocess.run(
        [sys.executable, "-m", "stats_log_collector", component],
        env=environ,
        capture_output=True,
        timeout=60,
    )
    return done.returncode, done.stderr.decode().splitlines()


def test_an_empty_path_is_refused_not_taken_for_the_current_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VIRTLET_VM_LOG_LOCATION: must be a path"):
        load(VirtletLogSettings, {}, {"VIRTLET_VM_LOG_LOCATION": "", "STATE_DIR": str(tmp_path)})
    code, [line] = run_component(tmp_path, "virtlet-log", VIRTLET_VM_LOG_LOCATION="", STATE_DIR=str(tmp_path))
    assert code == 2 and "configuration error: VIRTLET_VM_LOG_LOCATION: must be a path" in line


def test_virtlet_log_metrics_port_in_use_exits_2(tmp_path: Path) -> None:
    (tmp_path / "vms").mkdir()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines = run_component(
            tmp_path,
            "virtlet-log",
            VIRTLET_VM_LOG_LOCATION=str(tmp_path / "vms"),
            KUBERNETES_POD_LOGS=str(tmp_path / "pods"),
            STATE_DIR=str(tmp_path / "state"),
            METRICS_PORT=str(port),
        )
    assert code == 2
    [line] = [line for line in lines if "METRICS_PORT" in line]
    assert f"configuration error: METRICS_PORT: cannot listen on {port}" in line
    assert "Traceback" not in "\n".join(lines)
