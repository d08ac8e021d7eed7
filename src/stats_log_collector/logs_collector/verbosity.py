"""LOG_VERBOSITY: raise virt-launcher and virt-handler verbosity, only when asked, and say so.

The original patched the KubeVirt CR to verbosity 4 on every start, changing a cluster setting
nobody asked to change. Here it happens only when LOG_VERBOSITY is set. When HCO manages KubeVirt
(HCO_NAMESPACE set), the KubeVirt CR is HCO's to write (it would revert our patch), so the
HyperConverged CR is patched instead.
"""

from __future__ import annotations

import logging

from ..kube import KubeClient
from ..kube.models import JSON

log = logging.getLogger(__name__)


def kubevirt_patch(level: int) -> JSON:
    levels = {"virtLauncher": level, "virtHandler": level}
    return {"spec": {"configuration": {"developerConfiguration": {"logVerbosity": levels}}}}


def hyperconverged_patch(level: int) -> JSON:
    return {"spec": {"logVerbosityConfig": {"kubevirt": {"virtLauncher": level, "virtHandler": level}}}}


async def raise_verbosity(client: KubeClient, namespace: str, level: int, hco: bool) -> bool:
    """Patch every KubeVirt (or HyperConverged) CR of ``namespace``; False if there was none."""
    kind = "HyperConverged" if hco else "KubeVirt"
    crs = await (client.hyperconverged_crs(namespace) if hco else client.kubevirt_crs(namespace))
    if not crs:
        log.warning("LOG_VERBOSITY set but no CR to patch", extra={"kind": kind, "namespace": namespace})
        return False
    for cr in crs:
        name = cr["metadata"]["name"]
        if hco:
            await client.patch_hyperconverged_cr(namespace, name, hyperconverged_patch(level))
        else:
            await client.patch_kubevirt_cr(namespace, name, kubevirt_patch(level))
        log.info(
            "raised virt-launcher and virt-handler log verbosity (LOG_VERBOSITY)",
            extra={"kind": kind, "namespace": namespace, "cr": name, "verbosity": level},
        )
    return True
