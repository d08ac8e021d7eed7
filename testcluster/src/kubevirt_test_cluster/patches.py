"""The three PATCH flavours of the Kubernetes API: JSON patch, JSON merge patch, strategic merge.

kmock merges every PATCH body as a plain dict merge, which is right for none of them exactly:
a JSON merge patch may replace a dict by a scalar, a JSON patch is a list of operations, and the
strategic merge patch that ``kubectl apply`` sends for built-in kinds merges lists of containers,
ports, env... by their merge keys and carries ``$patch``/``$setElementOrder``/``$retainKeys``
directives. The versions here are small but follow the specs (RFC 6902, RFC 7386, and the
apimachinery strategic-merge rules for the list fields that appear in our manifests).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .errors import ApiError

# Merge keys of the list fields of built-in kinds that use the "merge" patch strategy. Fields not
# listed here are atomic lists (replaced as a whole), which is what apimachinery does for them.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "secrets": "name",
}
PRIMITIVE_MERGE_LISTS = frozenset({"finalizers"})


def invalid_patch(message: str) -> ApiError:
    return ApiError(422, message)


# ---- RFC 7386 JSON merge patch ------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch: dicts merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- RFC 6902 JSON patch ------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise invalid_patch(f"invalid JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _container(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        node = _child(node, part)
    return node


def _child(node: Any, part: str) -> Any:
    try:
        if isinstance(node, list):
            return node[int(part)]
        return node[part]
    except (KeyError, IndexError, ValueError, TypeError):
        raise invalid_patch(
            f"the server rejected our request due to an error in our request: missing path element {part!r}"
        ) from None


def _get(doc: Any, path: str) -> Any:
    node = doc
    for part in _pointer(path):
        node = _child(node, part)
    return node


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _container(doc, parts), parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if not 0 <= index <= len(parent):
            raise invalid_patch(f"array index out of range: {path}")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise invalid_patch(f"cannot add to a scalar at {path}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent, last = _container(doc, parts), parts[-1]
    _child(parent, last)  # raises if absent
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
    return doc


def _replace(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _container(doc, parts), parts[-1]
    _child(parent, last)  # raises if absent
    parent[int(last) if isinstance(parent, list) else last] = value
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """Apply a list of RFC 6902 operations to a copy of the target."""
    if not isinstance(operations, list):
        raise ApiError(400, "the body of a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        match op:
            case "add":
                doc = _add(doc, path, copy.deepcopy(operation.get("value")))
            case "remove":
                doc = _remove(doc, path)
            case "replace":
                doc = _replace(doc, path, copy.deepcopy(operation.get("value")))
            case "move" | "copy":
                value = copy.deepcopy(_get(doc, operation["from"]))
                if op == "move":
                    doc = _remove(doc, operation["from"])
                doc = _add(doc, path, value)
            case "test":
                if _get(doc, path) != operation.get("value"):
                    raise invalid_patch(
                        "the server rejected our request due to an error in our request: "
                        f"test failed at {path}"
                    )
            case _:
                raise invalid_patch(f"Unexpected kind: {op}")
    return doc


# ---- strategic merge patch ----------------------------------------------------------------------


def strategic_merge(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch as apimachinery does for the fields in :data:`MERGE_KEYS`."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {key: copy.deepcopy(value) for key, value in patch.items() if key != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    order_hints: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            order_hints[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field, []) if item not in value]
        elif key in ("$retainKeys", "$patch"):
            continue
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = strategic_merge(result.get(key), value)
    for field, hint in order_hints.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(field, result[field], hint)
    if "$retainKeys" in patch:
        retained = set(patch["$retainKeys"])
        result = {key: value for key, value in result.items() if key in retained}
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    existing = list(current) if isinstance(current, list) else []
    if any(isinstance(item, Mapping) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, Mapping) and "$patch" in item)]
    if field in PRIMITIVE_MERGE_LISTS:
        return existing + [item for item in patch if item not in existing]
    key = _merge_key(field, patch)
    if key is None:
        return copy.deepcopy(patch)
    merged = existing
    for item in patch:
        index = next(
            (i for i, old in enumerate(merged) if isinstance(old, Mapping) and old.get(key) == item.get(key)),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(strategic_merge({}, item))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


def _merge_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    if field == "ports":  # containerPort in containers, port in services
        return "containerPort" if "containerPort" in items[0] else "port"
    key = MERGE_KEYS.get(field)
    return key if key is not None and all(key in item for item in items) else None


def _apply_order(field: str, items: list[Any], hint: list[Any]) -> list[Any]:
    key = _merge_key(field, hint) if hint and isinstance(hint[0], Mapping) else None
    if key is None:
        return items
    rank = {entry.get(key): position for position, entry in enumerate(hint)}
    return sorted(
        items, key=lambda item: rank.get(item.get(key), len(rank)) if isinstance(item, Mapping) else len(rank)
    )
