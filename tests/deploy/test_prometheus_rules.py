"""deploy/prometheus-rules.yaml: a plain Prometheus rule file that loads; its alerts fire when they should.

The format is Prometheus' (docs/configuration/alerting_rules.md, recording_rules.md): `groups:` of named
groups, each a list of rules. `promtool check rules` is the reference checker and `promtool test rules`
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

RULES = DEPLOY / "prometheus-rules.yaml"
UNIT_TESTS = Path(__file__).parent / "prometheus-rules.test.yaml"
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


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def by_name() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules()}


def test_the_file_is_a_plain_rule_file_not_an_operator_object() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}  # no apiVersion/kind: PrometheusRule objects come with the Operator
    [group] = document["groups"]
    assert set(group) == {"name", "rules"}
    assert [rule["alert"] for rule in group["rules"]] == [
        "VmMemoryHeadroomLow",
        "VmMemoryOverheadAboveRequest",
    ]


def test_each_alert_has_severity_duration_and_names_the_vm() -> None:
    for rule in rules():
        assert set(rule) == RULE_KEYS, rule["alert"]
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]
        assert rule["labels"] == {"severity": "warning"}
        for key in ("summary", "description"):
            text = rule["annotations"][key]
            for label in ("namespace", "vm", "node"):
                assert f"$labels.{label}" in text, (rule["alert"], key, label)
        assert "Look:" in rule["annotations"]["description"]  # runbook-style: where to look, what to do
        assert "Act:" in rule["annotations"]["description"]


def test_expressions_use_only_memstats_vm_metrics() -> None:
    used = {name for rule in rules() for name in re.findall(r"\bmemstat_\w+", rule["expr"])}
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
def test_promtool_checks_the_rule_file() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    """Each alert fires for the VM it should, with its annotations rendered, and for no other VM."""
    result = promtool("test", "rules", str(UNIT_TESTS))
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
def test_the_unit_tests_catch_a_changed_rule(tmp_path: Path, old: str, new: str) -> None:
    """The unit tests are not vacuous: a rule changed in a copy makes them fail."""
    text = RULES.read_text()
    assert old in text
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / RULES.name).write_text(text.replace(old, new, 1))
    (tmp_path / "tests" / "deploy").mkdir(parents=True)
    copy = tmp_path / "tests" / "deploy" / UNIT_TESTS.name
    copy.write_text(UNIT_TESTS.read_text())
    result = promtool("test", "rules", str(copy))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


@needs_promtool
def test_promtool_rejects_a_broken_rule_file(tmp_path: Path) -> None:
    """The checker is real: a rule with a PromQL syntax error is refused, naming it."""
    broken = tmp_path / "rules.yaml"
    broken.write_text(RULES.read_text().replace("< 0.10", "< < 0.10", 1))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert '"VmMemoryHeadroomLow": could not parse expression' in output
