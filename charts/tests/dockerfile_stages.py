#!/usr/bin/env python3
"""Checks the Dockerfile's shape (a real Docker build is not run here): one final stage per binary,
each FROM distroless, running as the non-root UID the pod security contexts expect, with the binary
as its entrypoint (the operator passes only args to trainer and predictor containers), copying it
from the `binaries` stage. `binaries` is FROM ${BINARIES}, which defaults to the `build` stage
(cargo build --release); the `host-binaries` stage (FROM scratch, the three binaries from the
build context and nothing else) is what tests/cluster/images.sh selects with
BINARIES=host-binaries. Every registry base image is an ARG (so it can be pinned by digest with
--build-arg), and the build stage copies every workspace member of the Cargo.toml beside it.

Usage: dockerfile_stages.py DOCKERFILE
"""

import pathlib
import re
import sys

BINARIES = ("recommender-operator", "recommender-trainer", "recommender-predictor")
# What a FROM may name besides an ARG: the empty image, or an earlier stage.
LOCAL_BASES = {"scratch"}


def stages(text):
    """Maps stage name -> (base image, body) for every `FROM base AS name` stage."""
    text = re.sub(r"\\\n", " ", text)
    parts = re.split(r"^FROM\s+", text, flags=re.MULTILINE)[1:]
    out = {}
    for part in parts:
        header, _, body = part.partition("\n")
        m = re.match(r"(\S+)\s+AS\s+(\S+)", header, re.IGNORECASE)
        if m:
            out[m.group(2)] = (m.group(1), body)
    return out


def workspace_dirs(cargo_toml):
    """The workspace's members' folders (a nested one, benches/trainer/libmf, as it is)."""
    members = re.search(r"^members\s*=\s*\[(.*?)\]", cargo_toml, re.MULTILINE | re.DOTALL)
    return sorted(set(re.findall(r'"([^"]+)"', members.group(1)))) if members else []


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    dockerfile = pathlib.Path(sys.argv[1])
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.MULTILINE))
    found = stages(text)
    problems = []
    # Every base image is an ARG (a full reference), so a release pipeline pins it by digest with
    # --build-arg and no edit of this file (docs/images.md).
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        arg = re.fullmatch(r"\$\{(\w+)\}", base)
        if arg is None and base not in LOCAL_BASES and base not in found:
            problems.append(f"FROM {base}: a registry image named in place, not through an ARG")
        elif arg and arg.group(1) not in args:
            problems.append(f"FROM {base}: no ARG {arg.group(1)} with a default")
    # cargo loads the whole workspace: a member not copied into the build stage fails the build.
    build_body = found.get("build", ("", ""))[1]
    cargo_toml = dockerfile.with_name("Cargo.toml")
    for d in workspace_dirs(cargo_toml.read_text()) if cargo_toml.exists() else []:
        # The member's folder itself or a folder holding it (COPY benches ./benches).
        parents = ["/".join(d.split("/")[:i]) for i in range(1, d.count("/") + 2)]
        if not any(
            re.search(rf"^COPY\s+{re.escape(p)}\s+\./{re.escape(p)}\s*$", build_body, re.MULTILINE)
            for p in parents
        ):
            problems.append(f"build stage: workspace member {d}/ is not copied (COPY {d} ./{d})")
    if args.get("BINARIES") != "build":
        problems.append("ARG BINARIES must default to build (the release build stage)")
    if found.get("binaries", ("",))[0] != "${BINARIES}":
        problems.append("no stage `FROM ${BINARIES} AS binaries`")
    if "build" not in found:
        problems.append("no stage build")
    host = found.get("host-binaries")
    if host is None:
        problems.append("no stage host-binaries")
    else:
        base, body = host
        instructions = [line.split()[0].upper() for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if base != "scratch" or set(instructions) != {"COPY"}:
            problems.append("host-binaries: must be FROM scratch with only COPY")
        elif not all(b in body for b in BINARIES):
            problems.append("host-binaries: does not copy all three binaries")
    for binary in BINARIES:
        if binary not in found:
            problems.append(f"no stage {binary}")
            continue
        base, body = found[binary]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        if "distroless" not in base:
            problems.append(f"{binary}: final image {base} is not distroless")
        if not re.search(r"^USER\s+65532(:65532)?\s*$", body, re.MULTILINE):
            problems.append(f"{binary}: does not run as USER 65532")
        if f'ENTRYPOINT ["/usr/local/bin/{binary}"]' not in body:
            problems.append(f"{binary}: ENTRYPOINT is not /usr/local/bin/{binary}")
        if f"COPY --from=binaries /out/{binary} /usr/local/bin/{binary}" not in body:
            problems.append(f"{binary}: does not copy /out/{binary} from the binaries stage")
    if "cargo build --release" not in text:
        problems.append("no cargo build --release")
    if problems:
        raise SystemExit("Dockerfile: " + "; ".join(problems))


if __name__ == "__main__":
    main()
