"""Shared fixtures.

``kubevirt_cluster``: a fresh KubeVirt test cluster (a real HTTP server on 127.0.0.1 speaking the
Kubernetes API, see ``kubevirt_test_cluster``) per test, stopped afterwards. It runs on its own
thread, so sync tests, async tests and subprocesses (kubectl) can all use it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubevirt_test_cluster import KubeVirtCluster


@pytest.fixture
def kubevirt_cluster() -> Iterator[KubeVirtCluster]:
    with KubeVirtCluster() as cluster:
        yield cluster
