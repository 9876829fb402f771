"""Turns one `oha --output-format json` result into a Markdown table row."""

import json
import sys

d = json.load(sys.stdin)
s, p = d["summary"], d["latencyPercentiles"]
codes = ", ".join(f"{k}: {v}" for k, v in d.get("statusCodeDistribution", {}).items())
errors = ", ".join(f"{k}: {v}" for k, v in d.get("errorDistribution", {}).items()) or "none"
print(
    f"| {s['requestsPerSec']:.0f} | {p['p50'] * 1000:.3f} ms | {p['p99'] * 1000:.3f} ms "
    f"| {s['successRate'] * 100:.2f}% | {codes} | {errors} |"
)
