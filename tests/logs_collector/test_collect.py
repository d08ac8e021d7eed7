"""Runs against the test cluster: exact windows over consecutive runs, migrations, restarts, faults."""

from __future__ import annotations

import logging

import pytest

from kubevirt_test_cluster import KubeVirtCluster, handler_line
from tests.logs_collector.conftest import Scenario, collect, collected


async def test_three_runs_collect_exactly_the_lines_written_per_vm(scenario: Scenario) -> None:
    # vm-1 and vm-10 share a prefix; other/vm-1 (not watched) shares vm-1's name on the same node
    for name, node in (("vm-1", "node-1"), ("vm-10", "node-1"), ("vm-2", "node-2")):
        scenario.vm(name, node)
    stranger = scenario.cluster.add_vmi("other", "vm-1", "node-1")
    for _ in range(3):
        for vm in ("vm-1", "vm-10", "vm-2"):
            scenario.launcher(vm, lines=4)
        scenario.handler("node-1", ["vm-1", "vm-10", "vm-1"])
        scenario.handler("node-2", ["vm-2"])
        handler = scenario.handlers["node-1"]
        scenario.cluster.append_log(
            handler.namespace,
            handler.name,
            "virt-handler",
            handler_line("other", name="vm-1", namespace="other", uid=stranger.uid),
            scenario.stamp(),
        )
        # the boundary falls inside a group of lines with one timestamp
        scenario.launcher("vm-2", lines=3, same_stamp=True)
        summary = await collect(scenario.cluster, scenario.data_dir)
        assert summary.vms == 3 and not summary.failed_vms
        scenario.assert_exact()
    names = sorted(path.name for path in scenario.folder("vm-1").iterdir())
    assert len(names) == 9  # 3 runs x (compute, guest-console-log, handler)
    assert all(name.endswith(".log.gz") and not name.startswith(".") for name in names)


async def test_a_run_with_nothing_new_writes_no_file(scenario: Scenario) -> None:
    scenario.vm("vm-1", "node-1")
    scenario.launcher("vm-1")
    await collect(scenario.cluster, scenario.data_dir)
    before = sorted(scenario.folder("vm-1").iterdir())
    summary = await collect(scenario.cluster, scenario.data_dir)
    assert sorted(scenario.folder("vm-1").iterdir()) == before and summary.files == 0
    scenario.assert_exact()


async def test_live_migration_reads_both_pods_and_both_handlers(scenario: Scenario) -> None:
    vmi = scenario.vm("vm-1", "node-1")
    scenario.launcher("vm-1")
    scenario.handler("node-1", ["vm-1"])
    await collect(scenario.cluster, scenario.data_dir)
    target = scenario.cluster.start_migration(vmi, "node-2")
    scenario.pods["vm-1"].append(target)
    scenario.launcher("vm-1", pod=scenario.pods["vm-1"][0])
    scenario.launcher("vm-1", pod=target)
    scenario.handler("node-1", ["vm-1"])
    scenario.handler("node-2", ["vm-1"])
    summary = await collect(scenario.cluster, scenario.data_dir)
    assert not summary.failed_vms
    scenario.assert_exact()
    scenario.cluster.finish_migration(vmi)
    scenario.launcher("vm-1", pod=target)
    scenario.handler("node-1", ["vm-1"])  # the source's handler still logs the clean-up
    scenario.handler("node-2", ["vm-1"])
    summary = await collect(scenario.cluster, scenario.data_dir)
    assert not summary.failed_vms
    scenario.assert_exact()


async def test_restarted_container_previous_run_then_current(scenario: Scenario) -> None:
    scenario.vm("vm-1", "node-1")
    pod = scenario.pods["vm-1"][0]
    scenario.launcher("vm-1")
    await collect(scenario.cluster, scenario.data_dir)
    scenario.launcher("vm-1")  # the end of the run that is about to die
    scenario.cluster.restart_container(pod.namespace, pod.name, "compute")
    scenario.launcher("vm-1")  # compute: new run; guest-console-log: same run
    await collect(scenario.cluster, scenario.data_dir)
    scenario.assert_exact()


async def test_container_restarted_before_the_first_run(scenario: Scenario) -> None:
    scenario.vm("vm-1", "node-1")
    pod = scenario.pods["vm-1"][0]
    scenario.launcher("vm-1")
    scenario.cluster.restart_container(pod.namespace, pod.name, "compute")
    scenario.launcher("vm-1")
    await collect(scenario.cluster, scenario.data_dir)
    scenario.assert_exact()


async def test_500s_fail_one_vm_the_others_are_collected_and_it_catches_up(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("vm-1", "vm-2"):
        scenario.vm(name, "node-1")
        scenario.launcher(name)
    scenario.cluster.inject(rf"/pods/{scenario.pods['vm-1'][0].name}/log$", 500, times=None)
    with caplog.at_level(logging.WARNING):
        summary = await collect(scenario.cluster, scenario.data_dir)
    assert summary.failed_vms == {"vms/vm-1"}
    failures = [r for r in caplog.records if r.getMessage().startswith("VM not collected")]
    assert {r.vm for r in failures} == {"vms/vm-1"} and all("500" in r.reason for r in failures)  # type: ignore[attr-defined]
    scenario.assert_exact(["vm-2"])
    assert not list(scenario.folder("vm-1").glob(".*"))  # nothing half-written left behind
    scenario.cluster.clear_faults()
    scenario.launcher("vm-1")
    summary = await collect(scenario.cluster, scenario.data_dir)
    assert not summary.failed_vms
    scenario.assert_exact()


async def test_a_handler_timeout_fails_only_its_node(scenario: Scenario) -> None:
    scenario.vm("vm-1", "node-1")
    scenario.vm("vm-2", "node-2")
    for vm, node in (("vm-1", "node-1"), ("vm-2", "node-2")):
        scenario.launcher(vm)
        scenario.handler(node, [vm])
    scenario.cluster.inject_timeout(rf"/pods/{scenario.handlers['node-1'].name}/log$", 20.0, times=None)
    summary = await collect(scenario.cluster, scenario.data_dir, request_timeout=2.0)
    assert summary.failed_vms == {"vms/vm-1"}
    scenario.assert_exact(["vm-2"])
    assert not [key for key in scenario.collected("vm-1") if key[1] == ""]  # no handler file
    scenario.cluster.clear_faults()
    scenario.handler("node-1", ["vm-1"])
    await collect(scenario.cluster, scenario.data_dir)
    scenario.assert_exact()


async def test_pod_deleted_mid_run(scenario: Scenario, kubevirt_cluster: KubeVirtCluster) -> None:
    for name in ("vm-1", "vm-2"):
        scenario.vm(name, "node-1")
        scenario.launcher(name)
    kubevirt_cluster.vanish_after_list("vms", scenario.pods["vm-1"][0].name)
    summary = await collect(scenario.cluster, scenario.data_dir)
    assert summary.failed_vms == {"vms/vm-1"}
    scenario.assert_exact(["vm-2"])
    summary = await collect(scenario.cluster, scenario.data_dir)
    assert summary.failed_vms == {"vms/vm-1"}  # no virt-launcher pod any more


async def test_several_namespaces_get_a_folder_each(scenario: Scenario) -> None:
    scenario.vm("vm-1", "node-1")
    scenario.launcher("vm-1")
    other = scenario.cluster.add_vmi("other", "vm-1", "node-1")
    pod = scenario.cluster.add_launcher_pod(other)
    scenario.cluster.append_log("other", pod.name, "compute", "other's line", scenario.stamp())
    await collect(scenario.cluster, scenario.data_dir, NAMESPACE="vms,other")
    assert collected(scenario.data_dir / "vms" / "vm-1") == {
        key: lines for key, lines in scenario.expected["vm-1"].items()
    }
    [other_line] = collected(scenario.data_dir / "other" / "vm-1")[(pod.name, "compute")]
    assert other_line.endswith(b" other's line")
    assert not (scenario.data_dir / "vm-1").exists()
