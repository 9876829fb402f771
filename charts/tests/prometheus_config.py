#!/usr/bin/env python3
"""Turns the chart's ServiceMonitor, PodMonitor and PrometheusRule, as `helm template` rendered
them, into a plain Prometheus configuration: the scrape jobs the Prometheus Operator generates
from those objects (kubernetes_sd_configs and relabelling on the same selectors, ports, paths,
intervals, honorLabels and job label), and the rule file. tests/cluster/prometheus.sh runs a real
Prometheus on it against the local cluster, so the end-to-end tests see exactly what the chart's
monitors select, without the Prometheus Operator.

Every `for:` of the rules is replaced by --for (the live tests cannot wait 15 minutes); nothing
else in the rules changes.

Usage: prometheus_config.py RENDERED.yaml OUT_DIR --kubeconfig PATH [--for 10s] [--interval 2s]
Writes OUT_DIR/prometheus.yml and OUT_DIR/rules.yaml.
"""

import argparse
import pathlib
import re
import sys

import yaml


def escape(text):
    """`text` as a literal in an RE2 regex (only the metacharacters escaped, for readable output)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def sanitize(label):
    """Prometheus's meta label names: every character outside [a-zA-Z0-9_] becomes _."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def selector_relabelling(selector, prefix):
    """A Kubernetes label selector as keep/drop rules on `__meta_kubernetes_<prefix>_label*`, as the
    Prometheus Operator writes it."""
    rules = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        name = sanitize(key)
        rules.append(
            {
                "action": "keep",
                "source_labels": [f"__meta_kubernetes_{prefix}_label_{name}", f"__meta_kubernetes_{prefix}_labelpresent_{name}"],
                "regex": f"({escape(value)});true",
            }
        )
    for expr in selector.get("matchExpressions") or []:
        name, op = sanitize(expr["key"]), expr["operator"]
        values = "|".join(escape(v) for v in expr.get("values") or [])
        both = [f"__meta_kubernetes_{prefix}_label_{name}", f"__meta_kubernetes_{prefix}_labelpresent_{name}"]
        present = [f"__meta_kubernetes_{prefix}_labelpresent_{name}"]
        if op == "In":
            rules.append({"action": "keep", "source_labels": both, "regex": f"({values});true"})
        elif op == "NotIn":
            rules.append({"action": "drop", "source_labels": both, "regex": f"({values});true"})
        elif op == "Exists":
            rules.append({"action": "keep", "source_labels": present, "regex": "true"})
        elif op == "DoesNotExist":
            rules.append({"action": "drop", "source_labels": present, "regex": "true"})
        else:
            raise SystemExit(f"prometheus_config.py: unknown selector operator {op!r}")
    return rules


def sd_config(role, namespace_selector, kubeconfig):
    sd = {"role": role, "kubeconfig_file": kubeconfig}
    names = (namespace_selector or {}).get("matchNames")
    if names and not (namespace_selector or {}).get("any"):
        sd["namespaces"] = {"names": list(names)}
    return sd


def common(endpoint, interval):
    job = {
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "metrics_path": endpoint.get("path") or "/metrics",
        "scheme": endpoint.get("scheme") or "http",
        "scrape_interval": endpoint.get("interval") or interval,
    }
    job["scrape_timeout"] = endpoint.get("scrapeTimeout") or job["scrape_interval"]
    return job


def replace(source, target, regex=None, replacement=None):
    rule = {"source_labels": source, "target_label": target}
    if regex:
        rule["regex"] = regex
    if replacement:
        rule["replacement"] = replacement
    return rule


def not_running():
    """Pods that finished are no targets (the Prometheus Operator drops them the same way)."""
    return {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"}


def service_monitor(sm, kubeconfig, interval):
    meta, spec = sm["metadata"], sm["spec"]
    jobs = []
    for i, ep in enumerate(spec["endpoints"]):
        if "port" not in ep:
            raise SystemExit(f"prometheus_config.py: ServiceMonitor {meta['name']} endpoint {i} has no port name")
        relabel = selector_relabelling(spec.get("selector") or {}, "service")
        relabel += [
            {"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"], "regex": escape(ep["port"])},
            not_running(),
            {
                "source_labels": ["__meta_kubernetes_endpointslice_address_target_kind", "__meta_kubernetes_endpointslice_address_target_name"],
                "regex": "Pod;(.*)",
                "target_label": "pod",
                "replacement": "${1}",
            },
            replace(["__meta_kubernetes_namespace"], "namespace"),
            replace(["__meta_kubernetes_service_name"], "service"),
            replace(["__meta_kubernetes_pod_name"], "pod"),
            replace(["__meta_kubernetes_pod_container_name"], "container"),
            replace(["__meta_kubernetes_service_name"], "job"),
        ]
        if spec.get("jobLabel"):
            relabel.append(replace([f"__meta_kubernetes_service_label_{sanitize(spec['jobLabel'])}"], "job", regex="(.+)", replacement="${1}"))
        relabel.append({"target_label": "endpoint", "replacement": ep["port"]})
        job = {"job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{i}"}
        job.update(common(ep, interval))
        job["kubernetes_sd_configs"] = [sd_config("endpointslice", spec.get("namespaceSelector"), kubeconfig)]
        job["relabel_configs"] = relabel
        jobs.append(job)
    return jobs


def pod_monitor(pm, kubeconfig, interval):
    meta, spec = pm["metadata"], pm["spec"]
    jobs = []
    for i, ep in enumerate(spec["podMetricsEndpoints"]):
        if "port" not in ep:
            raise SystemExit(f"prometheus_config.py: PodMonitor {meta['name']} endpoint {i} has no port name")
        relabel = selector_relabelling(spec.get("selector") or {}, "pod")
        relabel += [
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": escape(ep["port"])},
            not_running(),
            replace(["__meta_kubernetes_namespace"], "namespace"),
            replace(["__meta_kubernetes_pod_container_name"], "container"),
            replace(["__meta_kubernetes_pod_name"], "pod"),
            {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
        ]
        if spec.get("jobLabel"):
            relabel.append(replace([f"__meta_kubernetes_pod_label_{sanitize(spec['jobLabel'])}"], "job", regex="(.+)", replacement="${1}"))
        relabel.append({"target_label": "endpoint", "replacement": ep["port"]})
        job = {"job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{i}"}
        job.update(common(ep, interval))
        job["kubernetes_sd_configs"] = [sd_config("pod", spec.get("namespaceSelector"), kubeconfig)]
        job["relabel_configs"] = relabel
        jobs.append(job)
    return jobs


def shorten_for(groups, duration):
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = duration
    return groups


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rendered")
    parser.add_argument("out_dir")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--for", dest="for_", default="10s")
    parser.add_argument("--interval", default="2s")
    args = parser.parse_args()
    docs = [d for d in yaml.safe_load_all(pathlib.Path(args.rendered).read_text()) if d]
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    missing = [k for k in ("ServiceMonitor", "PodMonitor", "PrometheusRule") if k not in kinds]
    if missing:
        raise SystemExit(f"prometheus_config.py: {args.rendered} renders no {', '.join(missing)} (enable them in the values)")
    kubeconfig = str(pathlib.Path(args.kubeconfig).resolve())
    jobs = []
    for sm in kinds["ServiceMonitor"]:
        jobs += service_monitor(sm, kubeconfig, args.interval)
    for pm in kinds["PodMonitor"]:
        jobs += pod_monitor(pm, kubeconfig, args.interval)
    groups = [g for pr in kinds["PrometheusRule"] for g in shorten_for(pr["spec"]["groups"], args.for_)]
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    config = {
        "global": {"scrape_interval": args.interval, "scrape_timeout": args.interval, "evaluation_interval": args.interval},
        "rule_files": [str((out / "rules.yaml").resolve())],
        "scrape_configs": jobs,
    }
    (out / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"{out / 'prometheus.yml'}: {len(jobs)} scrape jobs; {out / 'rules.yaml'}: {sum(len(g['rules']) for g in groups)} rules, for: {args.for_}")


if __name__ == "__main__":
    sys.exit(main())
