#!/usr/bin/env bash
# The main job, locally, from a fresh machine: a local control plane with a node that runs pods
# as local processes, the operator, and a sample RecommenderModel trained on MovieLens 100k (when
# ../shared has it) or on a generated data set; ends with `kubectl get recommendermodels` and a
# prediction from the served model.
#
#   bash tests/demo.sh          run it (leaves the stack up so you can explore)
#   bash tests/demo.sh down     stop everything it started
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
source tests/stack.sh
OPERATOR_PIDFILE="$RECOMMENDER_STATE/operator.pid"
say() { printf '\n==> %s\n' "$*"; }

if [ "${1:-}" = down ]; then
  stop_pidfile "$OPERATOR_PIDFILE"
  stack_down
  exit 0
fi

say "installing what is missing and building (first run: the control plane takes ~15 minutes)"
bash tests/install-prereqs.sh
bash tests/cluster/build.sh >/dev/null
cargo build --locked --bins
BIN="$PWD/target/debug"

say "starting the local control plane and node"
stack_up "$BIN"

say "installing the CRD and starting the operator"
kubectl apply --server-side -f crds/recommendermodels.yaml >/dev/null
kubectl wait --for=condition=Established crd/recommendermodels.recommender.dev --timeout=60s >/dev/null
stop_pidfile "$OPERATOR_PIDFILE"
"$BIN/recommender-operator" --metrics-addr 127.0.0.1:18080 --leader-elect false \
  --trainer-image local/recommender-trainer:dev --predictor-image local/recommender-predictor:dev \
  >"$RECOMMENDER_STATE/operator.log" 2>&1 </dev/null &
echo $! >"$OPERATOR_PIDFILE"

say "putting the ratings on the model store"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: model-store, namespace: demo}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
YAML
kubectl -n demo wait pvc/model-store --for=jsonpath='{.status.phase}'=Bound --timeout=60s >/dev/null
store=$(kubectl get pv "$(kubectl -n demo get pvc model-store -o jsonpath='{.spec.volumeName}')" \
  -o jsonpath='{.spec.hostPath.path}')
mkdir -p "$store/ratings"
if [ -f "$RECOMMENDER_SHARED/datasets/ml-100k/u.data" ]; then
  echo "MovieLens 100k from $RECOMMENDER_SHARED (read in place by the copy; never committed)"
  cp "$RECOMMENDER_SHARED/datasets/ml-100k/u.data" "$store/ratings/ratings.data"
else
  echo "no ../shared: generating 100k synthetic ratings"
  "$BIN/recommender-trainer" generate --users 1000 --items 1700 --ratings 100000 --rank 10 \
    --seed 42 --out "$store/ratings/ratings.data"
fi

say "applying the sample RecommenderModel (tests/demo/recommendermodel.yaml)"
kubectl apply -f tests/demo/recommendermodel.yaml
if ! kubectl -n demo wait recommendermodel/movies --for=condition=Serving --timeout=300s; then
  kubectl -n demo describe recommendermodel movies
  echo "the model did not reach Serving; operator log: $RECOMMENDER_STATE/operator.log" >&2
  exit 1
fi

say "kubectl get recommendermodels -n demo"
kubectl get recommendermodels -n demo

pod_ip=$(kubectl -n demo get pods -l app.kubernetes.io/component=predictor \
  -o jsonpath='{.items[0].status.podIP}')
say "a prediction from the served model: GET http://$pod_ip:8080/v1/predict?user=196&item=242"
curl -sS "http://$pod_ip:8080/v1/predict?user=196&item=242"
echo
say "top 5 suggestions for user 196"
curl -sS "http://$pod_ip:8080/v1/users/196/recommendations?n=5"
echo
cat <<MSG

The stack is still running. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$RECOMMENDER_K8S_BIN:\$PATH
  kubectl -n demo describe recommendermodel movies
Stop everything with: bash tests/demo.sh down
MSG
