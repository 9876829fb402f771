#!/usr/bin/env python3
"""Shows that deny.toml can fail: each mutant adds to the workspace's real `cargo metadata` one
dependency that the policy must reject (a banned crate, a git or foreign-registry source, a
copyleft licence, a second version of a crate), and `cargo deny check` run on that metadata must
fail with the expected diagnostic naming the crate. The unmodified metadata must pass first, so a
failure is the mutant's and not the harness's. No network: the crates are only metadata.

Usage: mutants.py CARGO_DENY METADATA.json DENY.toml
"""

import copy
import json
import pathlib
import subprocess
import sys
import tempfile

CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
GIT = "git+https://github.com/someone/forked-crate?rev=0123abc#0123abc0123abc0123abc0123abc0123abc012"
ELSEWHERE = "registry+https://registry.example.invalid/index"
# The workspace member the injected crate hangs off: a normal (shipped) dependency of it.
HOST = "recommender-pgtls"

# name -> (crate name, version, source, licence, check, diagnostic code cargo-deny must report)
MUTANTS = {
    "banned crate (OpenSSL)": ("openssl-sys", "0.9.109", CRATES_IO, "MIT", "bans", "banned"),
    "banned crate (aws-lc-rs)": ("aws-lc-rs", "1.13.0", CRATES_IO, "ISC AND (Apache-2.0 OR ISC)", "bans", "banned"),
    "git source": ("forked-crate", "0.1.0", GIT, "MIT", "sources", "source-not-allowed"),
    "foreign registry": ("private-crate", "1.0.0", ELSEWHERE, "MIT", "sources", "source-not-allowed"),
    "copyleft licence": ("gpl-crate", "1.0.0", CRATES_IO, "GPL-3.0-only", "licenses", "rejected"),
    "second version of a crate": ("hex", "0.3.2", CRATES_IO, "MIT OR Apache-2.0", "bans", "duplicate"),
}


def inject(meta, name, version, source, licence):
    """Adds package name@version from source as a normal dependency of HOST."""
    meta = copy.deepcopy(meta)
    pkg_id = f"{source.split('#')[0]}#{name}@{version}"
    meta["packages"].append(
        {
            "name": name,
            "version": version,
            "id": pkg_id,
            "license": licence,
            "license_file": None,
            "description": "a dependency the policy must reject",
            "source": source,
            "dependencies": [],
            "targets": [
                {
                    "kind": ["lib"],
                    "crate_types": ["lib"],
                    "name": name.replace("-", "_"),
                    "src_path": f"/nonexistent/{name}-{version}/src/lib.rs",
                    "edition": "2021",
                    "doc": True,
                    "doctest": True,
                    "test": True,
                }
            ],
            "features": {},
            "manifest_path": f"/nonexistent/{name}-{version}/Cargo.toml",
            "metadata": None,
            "publish": None,
            "authors": [],
            "categories": [],
            "keywords": [],
            "readme": None,
            "repository": None,
            "homepage": None,
            "documentation": None,
            "edition": "2021",
            "links": None,
            "default_run": None,
            "rust_version": None,
        }
    )
    host = next(p for p in meta["packages"] if p["name"] == HOST and p["source"] is None)
    host["dependencies"].append(
        {
            "name": name,
            "source": source.split("#")[0],
            "req": f"={version}",
            "kind": None,
            "rename": None,
            "optional": False,
            "uses_default_features": True,
            "features": [],
            "target": None,
            "registry": None,
        }
    )
    meta["resolve"]["nodes"].append({"id": pkg_id, "dependencies": [], "deps": [], "features": []})
    node = next(n for n in meta["resolve"]["nodes"] if n["id"] == host["id"])
    node["dependencies"].append(pkg_id)
    node["deps"].append({"name": name.replace("-", "_"), "pkg": pkg_id, "dep_kinds": [{"kind": None, "target": None}]})
    return meta


def deny(cargo_deny, meta, config, check, workdir):
    """Runs cargo deny on META: exit code, [(severity, code, crates it is about, message)], stderr."""
    path = pathlib.Path(workdir) / "metadata.json"
    path.write_text(json.dumps(meta))
    run = subprocess.run(
        [cargo_deny, "--offline", "--format", "json", "--color", "never", "--metadata-path", str(path),
         "--config", config, "check", check],
        capture_output=True,
        text=True,
    )
    diagnostics = []
    for line in run.stderr.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("type") == "diagnostic":
            f = event["fields"]
            crates = {g["Krate"]["name"] for g in f.get("graphs") or [] if "Krate" in g}
            diagnostics.append((f.get("severity"), f.get("code"), crates, f.get("message", "")))
    return run.returncode, diagnostics, run.stderr


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    cargo_deny, meta_path, config = sys.argv[1:]
    meta = json.loads(pathlib.Path(meta_path).read_text())
    problems = []
    with tempfile.TemporaryDirectory() as work:
        for check in ("licenses", "bans", "sources"):
            rc, diags, err = deny(cargo_deny, meta, config, check, work)
            errors = [d for d in diags if d[0] == "error"]
            if rc != 0 or errors:
                raise SystemExit(f"mutants.py: the unmodified metadata fails `check {check}`:\n{err}")
        for what, (name, version, source, licence, check, code) in MUTANTS.items():
            rc, diags, err = deny(cargo_deny, inject(meta, name, version, source, licence), config, check, work)
            hit = [d for d in diags if d[0] == "error" and d[1] == code and name in d[2]]
            if rc == 0 or not hit:
                seen = [f"{d[0]} {d[1]} {sorted(d[2])}: {d[3]}" for d in diags] or [err.strip()[-400:]]
                problems.append(f"{what}: expected an error {code!r} naming {name}, got exit {rc}: {seen}")
    if problems:
        raise SystemExit("deny.toml accepted mutants:\n  " + "\n  ".join(problems))
    print(f"     deny.toml rejected all {len(MUTANTS)} mutants ({', '.join(MUTANTS)})")


if __name__ == "__main__":
    main()
