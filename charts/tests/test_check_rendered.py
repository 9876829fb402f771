#!/usr/bin/env python3
"""Shows that check_rendered.py can fail: each case doctors a correctly rendered manifest the way
a careless template change would, and the checker must report it.

Usage: test_check_rendered.py DEFAULT.yaml NAMESPACED.yaml RELEASE_NS NAMESPACED_VALUES.yaml
"""

import copy
import pathlib
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import check_rendered


def first(docs, kind, pred=lambda d: True):
    return next(d for d in docs if d["kind"] == kind and pred(d))


def container(docs):
    return first(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def add_rule(kind, rule):
    return lambda docs: first(docs, kind)["rules"].append(rule)


DEFAULT_CASES = {
    "wildcard verb": add_rule("ClusterRole", {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}),
    "secrets list": add_rule("ClusterRole", {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}),
    "pvc read": add_rule(
        "ClusterRole", {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get"]}
    ),
    "deployment delete": add_rule("ClusterRole", {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete"]}),
    "writable root fs": lambda docs: container(docs)["securityContext"].update(readOnlyRootFilesystem=False),
    "capabilities kept": lambda docs: container(docs)["securityContext"]["capabilities"].update(drop=[]),
    "no memory limit": lambda docs: container(docs)["resources"]["limits"].pop("memory"),
    "no seccomp": lambda docs: [
        container(docs)["securityContext"].pop("seccompProfile"),
        first(docs, "Deployment")["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile"),
    ],
    "missing label": lambda docs: first(docs, "Service")["metadata"]["labels"].pop("app.kubernetes.io/part-of"),
    "service selects nothing": lambda docs: first(docs, "Service")["spec"]["selector"].update(
        {"app.kubernetes.io/name": "x"}
    ),
    "binding to default SA elsewhere": lambda docs: first(docs, "ClusterRoleBinding")["subjects"][0].update(
        namespace="default"
    ),
    "rolling update without lease": lambda docs: first(docs, "Deployment")["spec"].update(
        strategy={"type": "RollingUpdate"}
    ),
    "networkpolicies read": add_rule(
        "ClusterRole", {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get"]}
    ),
    "operator pod labels dropped": lambda docs: container(docs).update(
        args=[a for a in container(docs)["args"] if not a.startswith("--operator-pod-labels=")]
    ),
    "operator image of another tag": lambda docs: container(docs).update(image=container(docs)["image"] + "-dirty"),
}
NAMESPACED_CASES = {
    "egress to anywhere": lambda docs: first(docs, "NetworkPolicy")["spec"]["egress"].append({}),
    "ingress from anyone": lambda docs: first(docs, "NetworkPolicy")["spec"]["ingress"].append({}),
    "policy selects other pods": lambda docs: first(docs, "NetworkPolicy")["spec"]["podSelector"].update(
        matchLabels={"app": "x"}
    ),
    "secret allow list entry dropped": lambda docs: container(docs).update(
        args=[a for a in container(docs)["args"] if a != "--allowed-secret=shop/movies-write-token"]
    ),
    "cluster role in namespaced mode": lambda docs: docs.append(
        {
            "kind": "ClusterRole",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": copy.deepcopy(first(docs, "Role")["metadata"]),
            "rules": [],
        }
    ),
    "secret names dropped": lambda docs: first(docs, "Role", lambda r: r["metadata"]["namespace"] == "shop")["rules"][
        -1
    ].pop("resourceNames"),
    "lease by any name": lambda docs: first(docs, "Role", lambda r: r["metadata"]["name"].endswith("leader-election"))[
        "rules"
    ][1].pop("resourceNames"),
    "honorLabels off": lambda docs: first(docs, "ServiceMonitor")["spec"]["endpoints"][0].update(honorLabels=False),
    "alert edited in the template": lambda docs: first(docs, "PrometheusRule")["spec"]["groups"][0]["rules"][0].update(
        {"for": "1m"}
    ),
    "dashboard edited": lambda docs: first(docs, "ConfigMap")["data"].update({"recommender-operator.json": "{}"}),
    "namespace arg missing": lambda docs: container(docs).update(
        args=[a for a in container(docs)["args"] if not a.startswith("--namespace=")]
    ),
    "operator digest replaced by the tag": lambda docs: container(docs).update(
        image=container(docs)["image"].split("@")[0] + ":0.1.0-rc1"
    ),
    "operator tag kept beside the digest": lambda docs: container(docs).update(
        image=container(docs)["image"].replace("@", ":0.1.0-rc1@")
    ),
    "trainer digest dropped": lambda docs: container(docs).update(
        args=[
            a.split("@")[0] + ":0.1.0-rc1" if a.startswith("--trainer-image=") else a
            for a in container(docs)["args"]
        ]
    ),
}


def run(path, ns, values_path, cases):
    values = yaml.safe_load((check_rendered.CHART / "values.yaml").read_text())
    if values_path:
        values = check_rendered.deep_merge(values, yaml.safe_load(pathlib.Path(values_path).read_text()))
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    if check_rendered.Checker(docs, ns, values).run():
        raise SystemExit(f"test_check_rendered.py: {path} should pass before doctoring")
    missed = []
    for name, doctor in cases.items():
        bad = copy.deepcopy(docs)
        doctor(bad)
        if not check_rendered.Checker(bad, ns, values).run():
            missed.append(name)
    return missed


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    default, namespaced, ns, values = sys.argv[1:]
    missed = run(default, ns, None, DEFAULT_CASES) + run(namespaced, ns, values, NAMESPACED_CASES)
    if missed:
        raise SystemExit(f"check_rendered.py accepted doctored manifests: {missed}")
    print(f"     check_rendered.py caught all {len(DEFAULT_CASES) + len(NAMESPACED_CASES)} doctored manifests")


if __name__ == "__main__":
    main()
