#!/usr/bin/env python3
"""Checks the manifests `helm template` rendered for the properties that matter: least-privilege
RBAC (no verb beyond what the operator uses, namespaced mode really namespaced), hardened pods
with resources, the standard labels, the operator and workload images the values name (by digest
when one is given), wiring between Service, Deployment and ServiceMonitor, and
that the PrometheusRule and dashboard are exactly the files the promtool tests and the docs cover.

Usage: check_rendered.py RENDERED.yaml RELEASE_NAMESPACE [VALUES.yaml]
Exits 1 listing every failed check, each naming the object it is about.
"""

import copy
import json
import pathlib
import re
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE.parent / "recommender-operator"
RUNBOOK = HERE.parent.parent / "docs" / "runbook.md"
DEFAULT_RUNBOOK_BASE = "https://example.invalid/recommender-operator/blob/main/docs/runbook.md"

# Everything the operator may do in a watched namespace: (apiGroup, resource) -> allowed verbs.
WATCH_PERMISSIONS = {
    ("recommender.dev", "recommendermodels"): {"get", "list", "watch"},
    ("recommender.dev", "recommendermodels/status"): {"patch"},
    ("recommender.dev", "recommendermodels/finalizers"): {"update"},
    ("batch", "jobs"): {"list", "watch", "create", "patch"},
    ("", "configmaps"): {"create", "patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("apps", "replicasets"): {"list"},
    ("", "services"): {"list", "watch", "create", "patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"create", "patch", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"create", "patch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "events"): {"create", "patch", "list"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "secrets"): {"get"},
}
LEASE_PERMISSIONS = {("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"}}
STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
]


def image_ref(image, app_version):
    """The reference the chart must render for an image's values: repository@digest when a digest is
    set (no tag then), else repository:tag with appVersion for an empty tag."""
    if image.get("digest"):
        return f"{image['repository']}@{image['digest']}"
    return f"{image['repository']}:{image.get('tag') or app_version}"


def deep_merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Checker:
    def __init__(self, docs, namespace, values):
        self.docs = docs
        self.ns = namespace
        self.values = values
        self.failures = []

    def fail(self, obj, message):
        where = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}" if obj else "chart"
        self.failures.append(f"{where}: {message}")

    def of_kind(self, kind):
        return [d for d in self.docs if d["kind"] == kind]

    def run(self):
        for check in (
            self.labels,
            self.deployment,
            self.rbac,
            self.service,
            self.network_policy,
            self.service_monitor,
            self.prometheus_rule,
            self.dashboard,
        ):
            check()
        return self.failures

    def labels(self):
        for obj in self.docs:
            labels = obj["metadata"].get("labels") or {}
            missing = [k for k in STANDARD_LABELS if not labels.get(k)]
            if missing:
                self.fail(obj, f"missing labels {missing}")

    def deployment(self):
        deployments = self.of_kind("Deployment")
        if len(deployments) != 1:
            self.fail(None, f"expected one Deployment, got {len(deployments)}")
            return
        dep = deployments[0]
        spec = dep["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext") or {}
        if pod_sc.get("runAsNonRoot") is not True:
            self.fail(dep, "pod securityContext.runAsNonRoot is not true")
        if dep["spec"]["replicas"] != self.values["replicaCount"]:
            self.fail(dep, "replicas differ from replicaCount")
        containers = spec.get("containers", []) + spec.get("initContainers", [])
        for c in containers:
            name = f"container {c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                self.fail(dep, f"{name}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.fail(dep, f"{name}: readOnlyRootFilesystem is not true")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                self.fail(dep, f"{name}: capabilities.drop lacks ALL")
            if (sc.get("capabilities") or {}).get("add"):
                self.fail(dep, f"{name}: adds capabilities")
            if sc.get("privileged"):
                self.fail(dep, f"{name}: privileged")
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                self.fail(dep, f"{name}: may run as root")
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                self.fail(dep, f"{name}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if not (res.get(kind) or {}).get(r):
                        self.fail(dep, f"{name}: no {kind}.{r}")
            want = image_ref(self.values["image"], self.app_version())
            if c["name"] == "operator" and c.get("image") != want:
                self.fail(dep, f"{name}: image {c.get('image')!r}, expected {want!r}")
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    self.fail(dep, f"{name}: no {probe}")
            self.operator_args(dep, c)
        sa = spec.get("serviceAccountName")
        if not sa or sa == "default":
            self.fail(dep, "runs under the default ServiceAccount")

    def operator_args(self, dep, c):
        args = c.get("args") or []
        port = self.values["metrics"]["port"]
        want = f"--metrics-addr={self.values['metrics']['bindAddress']}:{port}"
        if want not in args:
            self.fail(dep, f"args lack {want}: {args}")
        want = f"--cluster-domain={self.values['clusterDomain']}"
        if want not in args:
            self.fail(dep, f"args lack {want}: {args}")
        if not any(p.get("containerPort") == port and p.get("name") == "http-metrics" for p in c.get("ports", [])):
            self.fail(dep, f"no container port http-metrics {port}")
        namespaces = self.values["watchNamespaces"]
        ns_args = [a for a in args if a.startswith("--namespace")]
        if namespaces and ns_args != [f"--namespace={','.join(namespaces)}"]:
            self.fail(dep, f"--namespace should list {namespaces}, args {ns_args}")
        if not namespaces and ns_args:
            self.fail(dep, f"watching all namespaces but args restrict them: {ns_args}")
        for workload in ("trainer", "predictor"):
            want = f"--{workload}-image={image_ref(self.values['workloadImages'][workload], self.app_version())}"
            if want not in args:
                self.fail(dep, f"args lack {want}")
        env = {e["name"]: e.get("value") for e in c.get("env") or []}
        if env.get("RUST_LOG") != self.values["logLevel"]:
            self.fail(dep, f"RUST_LOG should be the logLevel {self.values['logLevel']!r}")
        elect = [a for a in args if a.startswith("--leader-elect")]
        leader = elect == ["--leader-elect=true"]
        if elect not in (["--leader-elect=true"], ["--leader-elect=false"]):
            self.fail(dep, f"--leader-elect must be given once as true or false: {elect}")
        if leader != self.leader_election():
            self.fail(dep, f"leader election is {leader}, expected {self.leader_election()}")
        selector = dep["spec"]["selector"]["matchLabels"]
        want = "--operator-pod-labels=" + ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        if want not in args:
            self.fail(dep, f"args lack {want} (each model's NetworkPolicy admits these pods)")
        allowed = [a for a in args if a.startswith("--allowed-secret")]
        if allowed != [f"--allowed-secret={s}" for s in self.values["secretAllowList"]]:
            self.fail(dep, f"--allowed-secret args {allowed} differ from secretAllowList")
        strategy = dep["spec"]["strategy"]["type"]
        if not leader and strategy != "Recreate":
            self.fail(dep, "without leader election the strategy must be Recreate, two pods would reconcile")

    def app_version(self):
        return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])

    def leader_election(self):
        enabled = self.values["leaderElection"]["enabled"]
        return self.values["replicaCount"] > 1 if enabled == "auto" else bool(enabled)

    def rbac(self):
        if not self.values["rbac"]["create"]:
            return
        cluster_roles = self.of_kind("ClusterRole")
        cluster_bindings = self.of_kind("ClusterRoleBinding")
        roles = self.of_kind("Role")
        bindings = self.of_kind("RoleBinding")
        namespaces = self.values["watchNamespaces"]
        lease_roles = [r for r in roles if any(rule["resources"] == ["leases"] for rule in r["rules"])]
        watch_roles = [r for r in roles if r not in lease_roles]
        if namespaces:
            if cluster_roles or cluster_bindings:
                self.fail(None, "namespaced mode renders cluster-wide RBAC")
            got = sorted(r["metadata"]["namespace"] for r in watch_roles)
            if got != sorted(namespaces):
                self.fail(None, f"Roles in {got}, expected one in each of {sorted(namespaces)}")
        else:
            if len(cluster_roles) != 1 or len(cluster_bindings) != 1:
                self.fail(None, "all-namespaces mode needs one ClusterRole and one ClusterRoleBinding")
            if watch_roles:
                self.fail(None, "all-namespaces mode renders extra Roles")
        for role in cluster_roles + watch_roles:
            self.rules(role, WATCH_PERMISSIONS)
        if bool(lease_roles) != self.leader_election():
            self.fail(None, f"lease Role present: {bool(lease_roles)}, leader election: {self.leader_election()}")
        for role in lease_roles:
            if role["metadata"]["namespace"] != self.ns:
                self.fail(role, "lease Role outside the release namespace")
            self.rules(role, LEASE_PERMISSIONS)
            for rule in role["rules"]:
                if set(rule["verbs"]) - {"create"} and not rule.get("resourceNames"):
                    self.fail(role, "lease access beyond create is not restricted to the Lease's name")
        self.bindings(cluster_bindings + bindings, {r["metadata"]["name"] for r in cluster_roles}, roles)

    def rules(self, role, allowed):
        seen_secrets = False
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                if "*" in rule.get(field, []):
                    self.fail(role, f"wildcard in {field}: {rule}")
            if rule.get("nonResourceURLs"):
                self.fail(role, "grants nonResourceURLs")
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    extra = set(rule["verbs"]) - allowed.get((group, resource), set())
                    if extra:
                        self.fail(
                            role, f"{group or 'core'}/{resource}: verbs {sorted(extra)} beyond what the operator uses"
                        )
                    if resource == "secrets":
                        seen_secrets = True
                        names = self.values["rbac"]["secrets"]["resourceNames"]
                        if sorted(rule.get("resourceNames") or []) != sorted(names):
                            self.fail(role, f"secrets resourceNames {rule.get('resourceNames')} != values {names}")
        if allowed is WATCH_PERMISSIONS and seen_secrets != self.values["rbac"]["secrets"]["enabled"]:
            self.fail(
                role,
                f"secrets access is {seen_secrets}, rbac.secrets.enabled is {self.values['rbac']['secrets']['enabled']}",
            )

    def bindings(self, bindings, cluster_role_names, roles):
        sa_names = {d["metadata"]["name"] for d in self.of_kind("ServiceAccount")}
        for b in bindings:
            ref = b["roleRef"]
            if ref["kind"] == "ClusterRole" and ref["name"] not in cluster_role_names:
                self.fail(b, f"binds ClusterRole {ref['name']} that the chart does not render")
            if ref["kind"] == "Role" and not any(
                r["metadata"]["name"] == ref["name"] and r["metadata"]["namespace"] == b["metadata"]["namespace"]
                for r in roles
            ):
                self.fail(b, f"binds Role {ref['name']} absent from its namespace")
            for s in b["subjects"]:
                if s["kind"] != "ServiceAccount" or s["namespace"] != self.ns:
                    self.fail(b, f"subject {s} is not a ServiceAccount of the release namespace")
                elif self.values["serviceAccount"]["create"] and s["name"] not in sa_names:
                    self.fail(b, f"subject {s['name']} is not the chart's ServiceAccount")

    def service(self):
        services = self.of_kind("Service")
        deps = self.of_kind("Deployment")
        if len(services) != 1 or not deps:
            self.fail(None, f"expected one metrics Service, got {len(services)}")
            return
        svc = services[0]
        pod_labels = deps[0]["spec"]["template"]["metadata"]["labels"]
        if not all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()):
            self.fail(svc, "selector does not match the operator pods")
        if [p["targetPort"] for p in svc["spec"]["ports"]] != ["http-metrics"]:
            self.fail(svc, "does not target the http-metrics port")

    def network_policy(self):
        """Off: none. On: one, selecting exactly the operator pods, admitting only metricsFrom to the
        metrics port, letting out only the API server, DNS, the predictors and the databases."""
        policies = self.of_kind("NetworkPolicy")
        values = self.values["networkPolicy"]
        if len(policies) != int(values["enabled"]):
            self.fail(None, f"{len(policies)} NetworkPolicies rendered, networkPolicy.enabled {values['enabled']}")
            return
        deps = self.of_kind("Deployment")
        for np in policies:
            spec = np["spec"]
            if deps and spec["podSelector"].get("matchLabels") != deps[0]["spec"]["selector"]["matchLabels"]:
                self.fail(np, "podSelector is not the operator Deployment's selector")
            if sorted(spec.get("policyTypes") or []) != ["Egress", "Ingress"]:
                self.fail(np, f"policyTypes {spec.get('policyTypes')}, expected Ingress and Egress")
            ingress = spec.get("ingress") or []
            port = self.values["metrics"]["port"]
            want_in = [{"from": values["metricsFrom"], "ports": [{"port": port, "protocol": "TCP"}]}]
            if ingress != (want_in if values["metricsFrom"] else []):
                self.fail(np, f"ingress {ingress}, expected only metricsFrom to port {port}")
            egress = spec.get("egress") or []
            tcp = lambda ports: [{"port": p, "protocol": "TCP"} for p in ports]  # noqa: E731
            to = lambda cidrs: [{"ipBlock": {"cidr": c}} for c in cidrs]  # noqa: E731
            out = values["egress"]
            expected = []
            for dest in (out["apiServer"], out["databases"]):
                rule = {"ports": tcp(dest["ports"])}
                if dest["cidrs"]:
                    rule["to"] = to(dest["cidrs"])
                expected.append(rule)
            dns = out["dns"]
            dns_rule = {
                "to": [{"namespaceSelector": dns["namespaceSelector"], "podSelector": dns["podSelector"]}],
                "ports": [{"port": p, "protocol": proto} for p in dns["ports"] for proto in ("UDP", "TCP")],
            }
            predictors = {
                "to": [
                    {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": self.values["predictorPodMonitor"]["selector"]["matchLabels"]},
                    }
                ],
                "ports": tcp(out["predictorPorts"]),
            }
            expected = [expected[0], dns_rule, predictors, expected[1], *out["extra"]]
            if egress != expected:
                self.fail(np, f"egress {json.dumps(egress)}, expected {json.dumps(expected)}")

    def service_monitor(self):
        monitors = self.of_kind("ServiceMonitor")
        if bool(monitors) != self.values["serviceMonitor"]["enabled"]:
            self.fail(
                None, f"ServiceMonitor rendered: {bool(monitors)}, enabled: {self.values['serviceMonitor']['enabled']}"
            )
        for sm in monitors:
            svc = self.of_kind("Service")[0]
            selector = sm["spec"]["selector"]["matchLabels"]
            if not all(svc["metadata"]["labels"].get(k) == v for k, v in selector.items()):
                self.fail(sm, "selector does not match the metrics Service")
            ep = sm["spec"]["endpoints"][0]
            if ep.get("honorLabels") is not True:
                self.fail(sm, "honorLabels must be true or the models' namespace label is renamed")
            if ep["port"] != svc["spec"]["ports"][0]["name"]:
                self.fail(sm, "endpoint port is not the Service's port name")
            job = svc["metadata"]["labels"].get(sm["spec"].get("jobLabel"))
            rules = self.of_kind("PrometheusRule")
            if rules and f'job="{job}"' not in json.dumps(rules[0]["spec"]).replace('\\"', '"'):
                self.fail(sm, f"scrape job {job!r} is not the job the alerts select")

    def prometheus_rule(self):
        rules = self.of_kind("PrometheusRule")
        cfg = self.values["prometheusRule"]
        if bool(rules) != cfg["enabled"]:
            self.fail(None, f"PrometheusRule rendered: {bool(rules)}, enabled: {cfg['enabled']}")
        if not rules:
            return
        pr = rules[0]
        # The rendered groups must be files/alerts.yaml with exactly the chart's three edits.
        text = (CHART / "files" / "alerts.yaml").read_text()
        text = text.replace(DEFAULT_RUNBOOK_BASE, cfg["runbookBaseUrl"].rstrip("/"))
        name = self.values.get("nameOverride") or "recommender-operator"
        text = text.replace('job="recommender-operator"', f'job="{name}"')
        expected = yaml.safe_load(text)["groups"]
        for group in expected:
            for rule in group["rules"]:
                rule["labels"] = {**cfg["additionalRuleLabels"], **rule.get("labels", {})}
        if pr["spec"]["groups"] != expected:
            self.fail(pr, "groups differ from files/alerts.yaml (the promtool-tested text)")
        anchors = runbook_anchors()
        for group in pr["spec"]["groups"]:
            for rule in group["rules"]:
                alert = rule["alert"]
                ann = rule.get("annotations", {})
                if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    self.fail(pr, f"{alert}: no severity")
                if not rule.get("for"):
                    self.fail(pr, f"{alert}: no for")
                if "$labels.namespace" not in ann.get("summary", ""):
                    self.fail(pr, f"{alert}: summary does not name the namespace")
                if alert.startswith("RecommenderModel") and "$labels.name" not in ann.get("summary", ""):
                    self.fail(pr, f"{alert}: summary does not name the RecommenderModel")
                url = ann.get("runbook_url", "")
                if not url.startswith(cfg["runbookBaseUrl"].rstrip("/") + "#"):
                    self.fail(pr, f"{alert}: runbook_url {url!r} not under {cfg['runbookBaseUrl']}")
                if url.split("#")[-1] not in anchors:
                    self.fail(pr, f"{alert}: docs/runbook.md has no section #{url.split('#')[-1]}")

    def dashboard(self):
        maps = [d for d in self.of_kind("ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
        cfg = self.values["dashboard"]
        if bool(maps) != cfg["enabled"]:
            self.fail(None, f"dashboard ConfigMap rendered: {bool(maps)}, enabled: {cfg['enabled']}")
        for cm in maps:
            want = json.loads((CHART / "dashboards" / "recommender-operator.json").read_text())
            try:
                got = json.loads(cm["data"]["recommender-operator.json"])
            except (KeyError, json.JSONDecodeError) as e:
                self.fail(cm, f"dashboard JSON unreadable: {e}")
                continue
            if got != want:
                self.fail(cm, "dashboard differs from dashboards/recommender-operator.json")
            for k, v in cfg["labels"].items():
                if cm["metadata"]["labels"].get(k) != v:
                    self.fail(cm, f"missing the Grafana sidecar label {k}={v}")
            if cm["metadata"]["namespace"] != (cfg["namespace"] or self.ns):
                self.fail(cm, "not in dashboard.namespace")


def runbook_anchors():
    """GitHub-style anchors of the runbook's headings."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def main():
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    rendered, namespace = sys.argv[1], sys.argv[2]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if len(sys.argv) == 4:
        values = deep_merge(values, yaml.safe_load(pathlib.Path(sys.argv[3]).read_text()))
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    failures = Checker(docs, namespace, values).run()
    kinds = sorted({d["kind"] for d in docs})
    if failures:
        print(f"FAIL {rendered}: {len(failures)} problems")
        for f in failures:
            print(f"  - {f}")
        sys.exit(1)
    print(f"ok   {rendered}: {len(docs)} objects ({', '.join(kinds)})")


if __name__ == "__main__":
    main()
