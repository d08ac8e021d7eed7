"""The PrometheusRule of the monitoring component: its spec is a plain Prometheus rule file that loads; its
alerts fire when they should.

The PrometheusRule is the single source of the rules: the tests extract its ``spec`` into a plain rule file
(what a user without the Operator loads with ``rule_files:``) and run promtool on that. The format is
Prometheus' (docs/configuration/alerting_rules.md, recording_rules.md): `groups:` of named groups, each a
list of rules. `promtool check rules` is the reference checker and `promtool test rules`
(docs/configuration/unit_testing_rules.md) evaluates the rules over synthetic series
(prometheus-rules.test.yaml); both are skipped, with the reason, where promtool is not installed (Debian
package `prometheus`; .ci/run installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import DEPLOY

PROMETHEUS_RULE = DEPLOY / "components" / "monitoring" / "prometheusrule.yaml"
UNIT_TESTS = Path(__file__).parent / "prometheus-rules.test.yaml"


def rule_file(directory: Path) -> Path:
    """The PrometheusRule's spec as a plain rule file, where the unit tests expect it (../../deploy/)."""
    target = directory / "deploy" / "prometheus-rules.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"], sort_keys=False))
    return target


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """tmp/deploy/prometheus-rules.yaml and tmp/tests/deploy/prometheus-rules.test.yaml, as in a checkout."""
    rule_file(tmp_path)
    (tmp_path / "tests" / "deploy").mkdir(parents=True)
    (tmp_path / "tests" / "deploy" / UNIT_TESTS.name).write_text(UNIT_TESTS.read_text())
    return tmp_path


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install --no-install-recommends prometheus)"
)

# What memstat exports per VM (labels namespace, vm, node); the rules may use nothing else.
VM_METRICS = {
    "memstat_vm_headroom_bytes",
    "memstat_vm_memory_limit_bytes",
    "memstat_vm_overhead_bytes",
    "memstat_vm_requested_overhead_bytes",
}
RULE_KEYS = {"alert", "expr", "for", "labels", "annotations"}


def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (document["apiVersion"], document["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    spec: dict[str, Any] = document["spec"]
    return spec


def rules(group_name: str | None = None) -> list[dict[str, Any]]:
    return [
        rule for group in spec()["groups"] if group_name in (None, group["name"]) for rule in group["rules"]
    ]


VM_GROUP, HEALTH_GROUP = "stats-log-collector-memstat", "stats-log-collector-health"


def by_name() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules()}


def test_the_spec_is_a_plain_rule_file() -> None:
    document = spec()
    assert set(document) == {"groups"}
    assert [set(group) for group in document["groups"]] == [{"name", "rules"}] * 2
    assert [rule["alert"] for rule in rules(VM_GROUP)] == [
        "VmMemoryHeadroomLow",
        "VmMemoryOverheadAboveRequest",
    ]
    assert [rule["alert"] for rule in rules(HEALTH_GROUP)] == [
        "MemstatPollsFailing",
        "MemstatNoGoodPoll",
        "VirtletLogFallingBehind",
        "VirtletLogFilesWaiting",
    ]


def test_each_alert_has_severity_duration_and_names_the_vm_or_the_pod() -> None:
    for rule in rules():
        assert set(rule) == RULE_KEYS, rule["alert"]
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]
        critical = rule["alert"] == "MemstatNoGoodPoll"  # every memstat alert is blind then
        assert rule["labels"] == {"severity": "critical" if critical else "warning"}
        names = ("namespace", "vm", "node") if rule in rules(VM_GROUP) else ("namespace", "pod")
        for key in ("summary", "description"):
            text = rule["annotations"][key]
            for label in names:
                assert f"$labels.{label}" in text, (rule["alert"], key, label)
        assert "Look:" in rule["annotations"]["description"]  # runbook-style: where to look, what to do
        assert "Act:" in rule["annotations"]["description"]


def test_vm_alerts_use_only_memstats_vm_metrics() -> None:
    """(test_metrics_exported.py checks every metric of every rule against what the components export.)"""
    used = {name for rule in rules(VM_GROUP) for name in re.findall(r"\bmemstat_\w+", rule["expr"])}
    assert used == VM_METRICS


def test_the_thresholds_are_the_documented_ones() -> None:
    headroom, overhead = by_name()["VmMemoryHeadroomLow"], by_name()["VmMemoryOverheadAboveRequest"]
    assert headroom["expr"].endswith("< 0.10")
    assert "(memstat_vm_memory_limit_bytes > 0)" in headroom["expr"]  # only where a limit exists
    assert headroom["for"] == "5m"
    assert overhead["expr"] == "memstat_vm_overhead_bytes > (memstat_vm_requested_overhead_bytes > 0)"
    assert overhead["for"] == "15m"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@needs_promtool
def test_promtool_checks_the_rule_file(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(rule_file(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass(rules_dir: Path) -> None:
    """Each alert fires for the VM it should, with its annotations rendered, and for no other VM."""
    result = promtool("test", "rules", str(rules_dir / "tests" / "deploy" / UNIT_TESTS.name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("< 0.10", "< 0.11"),  # the VM at exactly 10% would now fire
        ("for: 5m", "for: 7m"),  # the VM under 10% would not fire at 6m yet
        ("(memstat_vm_requested_overhead_bytes > 0)", "memstat_vm_requested_overhead_bytes"),
    ],
)
def test_the_unit_tests_catch_a_changed_rule(rules_dir: Path, old: str, new: str) -> None:
    """The unit tests are not vacuous: a rule changed in a copy makes them fail."""
    extracted = rules_dir / "deploy" / "prometheus-rules.yaml"
    text = extracted.read_text()
    assert old in text
    extracted.write_text(text.replace(old, new, 1))
    result = promtool("test", "rules", str(rules_dir / "tests" / "deploy" / UNIT_TESTS.name))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


@needs_promtool
def test_promtool_rejects_a_broken_rule_file(tmp_path: Path) -> None:
    """The checker is real: a rule with a PromQL syntax error is refused, naming it."""
    broken = rule_file(tmp_path)
    broken.write_text(broken.read_text().replace("< 0.10", "< < 0.10", 1))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert '"VmMemoryHeadroomLow": could not parse expression' in output
