"""A small kustomize: just the features deploy/k8s uses, so the manifests are checked without the binary.

Implemented: `resources` (files, and directories holding a kustomization.yaml, recursively),
`namespace`, `images` (name, newName, newTag, digest) and `patches` given inline as JSON 6902
operations (`add`, `replace`, `remove`) with a `target` (group, version, kind, name). A
kustomization with any other field is refused (UNSUPPORTED), so a manifest change that needs
more of kustomize fails here instead of being rendered wrongly. Where `kubectl` or `kustomize`
is installed, tests/deploy/test_k8s.py also compares this rendering with theirs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# Cluster-scoped kinds keep no namespace (the few a kustomization might hold).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
                  "StorageClass", "PersistentVolume", "APIService"}  # fmt: skip

Object = dict[str, Any]


class Unsupported(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def load_kustomization(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if unknown := set(data) - KNOWN:
        raise Unsupported(f"{directory}: {sorted(unknown)} not implemented by tests/deploy/kustomize.py")
    return data


def render(directory: Path) -> list[Object]:
    """The objects `kustomize build directory` would print (in the order of the resources, not kustomize's)."""
    k = load_kustomization(directory)
    objects: list[Object] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for patch in k.get("patches", []):
        objects = [_patched(obj, patch, directory) for obj in objects]
    for image in k.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                container["image"] = _new_image(container["image"], image)
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    return objects


def _containers(obj: Object) -> list[Object]:
    spec = obj.get("spec", {})
    pod = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _new_image(current: str, rule: dict[str, str]) -> str:
    if set(rule) - {"name", "newName", "newTag", "digest"}:
        raise Unsupported(f"image rule {rule}")
    name, tag = current, ""
    if "@" in name:
        name, tag = name.split("@", 1)[0], "@" + name.split("@", 1)[1]
    elif ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)[0], ":" + name.rsplit(":", 1)[1]
    if name != rule["name"]:
        return current
    if "digest" in rule:
        tag = "@" + rule["digest"]
    elif "newTag" in rule:
        tag = ":" + str(rule["newTag"])
    return rule.get("newName", name) + tag


def _matches(obj: Object, target: dict[str, str]) -> bool:
    if set(target) - {"group", "version", "kind", "name"}:
        raise Unsupported(f"patch target {target}")
    group, _, version = obj["apiVersion"].rpartition("/")
    actual = {"group": group, "version": version, "kind": obj["kind"], "name": obj["metadata"]["name"]}
    return all(actual[key] == value for key, value in target.items())


def _patched(obj: Object, patch: dict[str, Any], directory: Path) -> Object:
    if set(patch) - {"target", "patch", "path"} or "target" not in patch:
        raise Unsupported(f"patch {patch}: only JSON 6902 patches with a target")
    if not _matches(obj, patch["target"]):
        return obj
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise Unsupported("strategic merge patches are not implemented; use JSON 6902 operations")
    result = copy.deepcopy(obj)
    for op in operations:
        _apply(result, op)
    return result


def _apply(document: Object, op: dict[str, Any]) -> None:
    """One RFC 6902 operation (add, replace, remove) on `document`, in place."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) and last != "-" else last
    if op["op"] == "remove":
        del node[key]
    elif op["op"] == "replace":
        if isinstance(node, dict) and key not in node:
            raise KeyError(f"replace: {op['path']} does not exist")
        node[key] = op["value"]
    elif op["op"] == "add":
        if isinstance(node, list):
            node.insert(len(node) if key == "-" else key, op["value"])
        else:
            node[key] = op["value"]
    else:
        raise Unsupported(f"JSON 6902 op {op['op']!r}")
