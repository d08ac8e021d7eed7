"""The Prometheus Operator's objects of the monitoring component: valid against the Operator's own CRD schemas
(monitoring.coreos.com/v1, kept under prometheus-operator-crds/ with their license and source), and
pointing at ports and pods that exist.

The API server validates a custom object against its CRD's ``openAPIV3Schema`` and, with strict field
validation (kubectl's default since 1.27), refuses fields the schema does not declare; the schemas are made
strict the same way here (``additionalProperties: false`` wherever properties are declared and unknown
fields are not preserved) and checked with the ``jsonschema`` library.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.manifests import DEPLOY, KUBECTL, Obj, env_values, kustomize, one, pod_spec, render

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (it renders the overlays)")
CRDS = Path(__file__).parent / "prometheus-operator-crds"
GROUP_VERSION = "monitoring.coreos.com/v1"


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the API server would refuse them."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        preserves = schema.get("x-kubernetes-preserve-unknown-fields", False)
        if "properties" in schema and "additionalProperties" not in schema and not preserves:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def schemas() -> dict[str, dict[str, Any]]:
    """Kind -> the strict schema of its v1 version."""
    found = {}
    for path in sorted(CRDS.glob("monitoring.coreos.com_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        found[crd["spec"]["names"]["kind"]] = strict(v1["schema"]["openAPIV3Schema"])
    return found


def monitoring_objects() -> list[Obj]:
    return [o for o in kustomize(DEPLOY / "overlays" / "monitoring") if o["apiVersion"] == GROUP_VERSION]


def validate(obj: Obj) -> None:
    jsonschema.Draft7Validator(schemas()[obj["kind"]]).validate(obj)


def test_the_crds_are_the_operators_with_their_license() -> None:
    assert set(schemas()) == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert "Apache License" in (CRDS / "LICENSE").read_text()
    source = (CRDS / "SOURCE.md").read_text()
    assert "github.com/prometheus-operator/prometheus-operator/blob/" in source


def test_every_operator_object_validates_against_its_crd() -> None:
    objects = monitoring_objects()
    assert sorted(o["kind"] for o in objects) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    for obj in objects:
        try:
            validate(obj)
        except jsonschema.ValidationError as error:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {error.message} at {list(error.path)}")


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ServiceMonitor", ("spec", "endpoints", 0, "intervall"), "30s"),  # misspelt field
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0, "port"), 9102),  # a number where a name goes
        ("PrometheusRule", ("spec", "groups", 0, "rules", 0, "for"), "five minutes"),  # not a duration
    ],
)
def test_the_crd_check_can_fail(kind: str, path: tuple[Any, ...], value: Any) -> None:
    obj = copy.deepcopy(one(monitoring_objects(), kind))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(obj)


def test_the_monitors_point_at_ports_that_exist() -> None:
    objects = render(OVERLAY="monitoring", COMPONENTS="procfs")
    service = one(objects, "Service", "stats-log-collector")
    monitor = one(objects, "ServiceMonitor")
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    pods = one(objects, "PodMonitor")
    [expression] = pods["spec"]["selector"]["matchExpressions"]
    daemonsets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "DaemonSet"}
    scraped = set()
    for daemonset in daemonsets.values():
        template = daemonset["spec"]["template"]
        if template["metadata"]["labels"]["app.kubernetes.io/component"] in expression["values"]:
            ports = {
                p["name"]: p["containerPort"]
                for c in pod_spec(daemonset)["containers"]
                for p in c.get("ports", [])
            }
            assert ports, daemonset["metadata"]["name"]
            scraped |= set(ports) & {e["port"] for e in pods["spec"]["podMetricsEndpoints"]}
    assert scraped == {"metrics", "http"}
    assert len(daemonsets) == 2  # the Deployment's pod is the ServiceMonitor's, never the PodMonitor's
    virtlet = pod_spec(one(objects, "DaemonSet", "stats-log-collector-virtlet-log"))["containers"][0]
    [metrics] = [p for p in virtlet["ports"] if p["name"] == "metrics"]
    assert env_values(virtlet)["METRICS_PORT"] == str(metrics["containerPort"])
