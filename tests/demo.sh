#!/usr/bin/env bash
# The main job, locally, from a fresh machine: a local cluster with real nodes (each a containerd
# and a kubelet; kube-proxy, CoreDNS), the operator installed by its Helm chart from its image, and a
# sample RecommenderModel trained on MovieLens 100k (when ../shared has it) or on ratings the
# trainer generates; ends with `kubectl get recommendermodels` and a prediction from the served
# model, through its Service.
#
#   bash tests/demo.sh          run it (leaves the stack up so you can explore)
#   bash tests/demo.sh down     stop everything it started
#
# tests/all.sh runs it as its first step on a fresh cluster, exactly as a new user would.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
source tests/stack.sh
say() { printf '\n==> %s\n' "$*"; }

if [ "${1:-}" = down ]; then
  stack_down
  exit 0
fi

say "installing what is missing and building (first run: the cluster's binaries take ~20 minutes)"
bash tests/install-prereqs.sh
bash tests/cluster/build.sh >/dev/null
cargo build --locked --bins
BIN="$PWD/target/debug"

say "starting the local cluster (control plane and real nodes) and importing the project's images"
stack_up "$BIN"

say "installing the CRD, and the operator with its Helm chart (namespace recommender-system)"
stack_crd
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm upgrade --install recommender charts/recommender-operator --namespace recommender-system \
  --create-namespace --wait --timeout 180s \
  --set image.repository=local/recommender-operator --set image.tag=dev \
  --set workloadImages.trainer.repository=local/recommender-trainer --set workloadImages.trainer.tag=dev \
  --set workloadImages.predictor.repository=local/recommender-predictor --set workloadImages.predictor.tag=dev \
  --set 'watchNamespaces={demo}' >/dev/null

say "the model store: a PersistentVolume on the node, with the ratings on it"
store="$RECOMMENDER_VOLUMES_DIR/demo/model-store"
mkdir -p "$store/ratings"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: demo-model-store}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: demo, name: model-store}
  local: {path: $store}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$RECOMMENDER_NODE_NAME]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: model-store, namespace: demo}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: demo-model-store
  resources: {requests: {storage: 1Gi}}
YAML
if [ -f "$RECOMMENDER_SHARED/datasets/ml-100k/u.data" ]; then
  echo "MovieLens 100k from $RECOMMENDER_SHARED (copied onto the local volume; never committed)"
  cp "$RECOMMENDER_SHARED/datasets/ml-100k/u.data" "$store/ratings/ratings.data"
else
  echo "no ../shared: generating 100k synthetic ratings"
  "$BIN/recommender-trainer" generate --users 1000 --items 1700 --ratings 100000 --rank 10 \
    --seed 42 --out "$store/ratings/ratings.data"
fi

say "applying the sample RecommenderModel (tests/demo/recommendermodel.yaml)"
kubectl apply -f tests/demo/recommendermodel.yaml
if ! kube_wait 300 -n demo recommendermodel/movies --for=condition=Ready; then
  kubectl -n demo describe recommendermodel movies
  kubectl -n recommender-system logs deploy/recommender-recommender-operator --tail=30 || true
  echo "the model did not become Ready" >&2
  exit 1
fi

say "kubectl get recommendermodels -n demo"
kubectl get recommendermodels -n demo

url="http://$(kubectl -n demo get service movies-predictor -o jsonpath='{.spec.clusterIP}'):8080"
say "a prediction from the served model, through its Service: GET $url/v1/predict?user=196&item=242"
for _ in $(seq 1 30); do curl -sf "$url/livez" >/dev/null && break; sleep 1; done
curl -sS "$url/v1/predict?user=196&item=242"
echo
say "top 5 suggestions for user 196"
curl -sS "$url/v1/users/196/recommendations?n=5"
echo
cat <<MSG

The stack is still running. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$RECOMMENDER_K8S_BIN:\$PATH
  kubectl -n demo describe recommendermodel movies
  kubectl -n recommender-system logs deploy/recommender-recommender-operator
Stop everything with: bash tests/demo.sh down
MSG
