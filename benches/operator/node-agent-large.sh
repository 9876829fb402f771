#!/usr/bin/env bash
# The test node agent, advertising a node big enough for the scale benchmark.
#
# cluster.sh starts $RECOMMENDER_NODE_AGENT with fixed arguments; scale.sh points that variable
# here so the node can hold 200 trainer pods (500m / 512Mi requested each, the operator's
# defaults) and 200 predictor pods (100m / 128Mi) at once. With the agent's defaults (8 CPU,
# 16Gi, 110 pods) the scheduler would queue most of them, and the benchmark would measure the
# node's size rather than the operator. The agent enforces no limits: the processes really run
# on this machine's cores whatever the node advertises.
#
# `exec` keeps the PID and makes /proc/PID/exe the real node-agent, which is what cluster.sh
# checks before it stops a component.
set -euo pipefail
exec "${SCALE_REAL_NODE_AGENT:?set by scale.sh: path of the real node-agent binary}" "$@" \
  --cpu "${SCALE_NODE_CPU:-256}" --memory "${SCALE_NODE_MEMORY:-1Ti}" \
  --max-pods "${SCALE_NODE_MAX_PODS:-1000}"
