#!/usr/bin/env python3
"""Checks the Dockerfile's shape (a real Docker build is not run here): one final stage per binary,
each FROM distroless, running as the non-root UID the pod security contexts expect, with the binary
as its entrypoint (the operator passes only args to trainer and predictor containers), copying it
from the `binaries` stage. `binaries` is FROM ${BINARIES}, which defaults to the `build` stage
(cargo build --release); the `host-binaries` stage (FROM scratch, the three binaries from the
build context and nothing else) is what tests/cluster/images.sh selects with
BINARIES=host-binaries.

Usage: dockerfile_stages.py DOCKERFILE
"""

import pathlib
import re
import sys

BINARIES = ("recommender-operator", "recommender-trainer", "recommender-predictor")


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


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    text = pathlib.Path(sys.argv[1]).read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.MULTILINE))
    found = stages(text)
    problems = []
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
