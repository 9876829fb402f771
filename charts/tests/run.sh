#!/usr/bin/env bash
# Tests of the Helm chart and its alerts, in one command (CI runs it as is):
#
#   bash charts/tests/run.sh
#
# 1. helm lint --strict and helm template with the default values and with values-namespaced.yaml
#    (namespaced RBAC, leader election, monitoring and dashboard on); check_rendered.py checks the
#    output (least-privilege RBAC, hardened pods with resources, labels, wiring, alerts = file).
# 2. values.schema.json and kubeVersion reject bad input, each with a message naming the value.
# 3. promtool check rules (the file and the rendered PrometheusRule), promtool test rules
#    (alerts_test.yaml), mutate_alerts.py (the tests fail on a broken alert), and the dashboard's
#    PromQL parsed by promtool.
# 4. promtool check metrics on scrapes of the predictor and (with KUBECONFIG) the operator, from
#    RECOMMENDER_BIN_DIR or target/{release,debug} when built (check_metrics.sh); the chart's
#    crds/ equals the generated crds/; hadolint and a shape check of the Dockerfile (the
#    release build stage needs Docker; tests/cluster/images.sh builds the images with buildah
#    from host binaries through the host-binaries stage).
# 5. Only when KUBECONFIG is set: against that API server, a server-side dry run of every rendered
#    manifest (monitoring.coreos.com objects only when their CRDs are installed there; otherwise
#    they are left out and the script says so), then a real `helm install` of the namespaced
#    configuration into throw-away namespaces and `kubectl auth can-i` as the operator's
#    ServiceAccount: allowed exactly what the operator needs, denied the rest. Everything it
#    creates is removed on exit.
#
# Tools: helm (tests/cluster/build.sh's cache, else go install of the same version), promtool
# (Debian's prometheus package, extracted, not installed) and hadolint (PyPI): see tools.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHART="$HERE/../recommender-operator"
KUBE_VERSION="${KUBE_VERSION:-1.34.4}"
RELEASE_NS=recommender-system

# shellcheck source=charts/tests/tools.sh
. "$HERE/tools.sh"
export PYTHONDONTWRITEBYTECODE=1

WORK="$(mktemp -d)"
CLEANUP=()
cleanup() {
  local i
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[i]}" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
step() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok   %s\n' "$*"; passed=$((passed + 1)); }
die() { printf 'FAIL %s\n' "$*" >&2; exit 1; }

# expect_failure DESCRIPTION EXPECTED_TEXT COMMAND...: the command must fail and say EXPECTED_TEXT.
expect_failure() {
  local what="$1" want="$2"
  shift 2
  local out
  if out="$("$@" 2>&1)"; then
    die "$what: accepted, should have been rejected"
  fi
  grep -qF -- "$want" <<<"$out" || die "$what: rejected without naming '$want':"$'\n'"$out"
  ok "$what: rejected ($want)"
}

step "helm lint and template ($("$HELM" version --short))"
"$HELM" lint --strict "$CHART" --kube-version "$KUBE_VERSION" >"$WORK/lint.log" || { cat "$WORK/lint.log"; die "helm lint (default values)"; }
ok "helm lint --strict, default values"
"$HELM" lint --strict "$CHART" --kube-version "$KUBE_VERSION" -f "$HERE/values-namespaced.yaml" >"$WORK/lint.log" ||
  { cat "$WORK/lint.log"; die "helm lint (values-namespaced.yaml)"; }
ok "helm lint --strict, values-namespaced.yaml"

"$HELM" template rec "$CHART" -n "$RELEASE_NS" --kube-version "$KUBE_VERSION" >"$WORK/default.yaml"
"$PYTHON" "$HERE/check_rendered.py" "$WORK/default.yaml" "$RELEASE_NS"
ok "default values render and pass the checks"
"$HELM" template rec "$CHART" -n "$RELEASE_NS" --kube-version "$KUBE_VERSION" -f "$HERE/values-namespaced.yaml" >"$WORK/namespaced.yaml"
"$PYTHON" "$HERE/check_rendered.py" "$WORK/namespaced.yaml" "$RELEASE_NS" "$HERE/values-namespaced.yaml"
ok "namespaced values render and pass the checks"
# A third combination: all namespaces, leader election forced on one replica, no Secret access.
cat >"$WORK/values-misc.yaml" <<'EOF'
leaderElection: {enabled: true, leaseName: recommender-leader}
rbac: {create: true, secrets: {enabled: false, resourceNames: []}}
serviceMonitor: {enabled: true}
prometheusRule: {enabled: true, runbookBaseUrl: "https://wiki.example.invalid/runbook/", additionalRuleLabels: {}}
EOF
"$HELM" template rec "$CHART" -n "$RELEASE_NS" --kube-version "$KUBE_VERSION" -f "$WORK/values-misc.yaml" >"$WORK/misc.yaml"
"$PYTHON" "$HERE/check_rendered.py" "$WORK/misc.yaml" "$RELEASE_NS" "$WORK/values-misc.yaml"
ok "forced leader election without Secret access renders and passes the checks"
"$PYTHON" "$HERE/test_check_rendered.py" "$WORK/default.yaml" "$WORK/namespaced.yaml" "$RELEASE_NS" "$HERE/values-namespaced.yaml"
ok "check_rendered.py fails on doctored manifests"

step "values.schema.json and kubeVersion reject bad input"
tmpl=("$HELM" template rec "$CHART" -n "$RELEASE_NS" --kube-version "$KUBE_VERSION")
expect_failure "unknown top-level key" "additional properties 'replicas' not allowed" "${tmpl[@]}" --set replicas=2
expect_failure "writable root filesystem" "readOnlyRootFilesystem" "${tmpl[@]}" --set securityContext.readOnlyRootFilesystem=false
expect_failure "privilege escalation" "allowPrivilegeEscalation" "${tmpl[@]}" --set securityContext.allowPrivilegeEscalation=true
expect_failure "running as root" "runAsNonRoot" "${tmpl[@]}" --set podSecurityContext.runAsNonRoot=false
expect_failure "invalid namespace name" "watchNamespaces/0" "${tmpl[@]}" --set 'watchNamespaces[0]=Not_A_Namespace'
expect_failure "leader election typo" "leaderElection/enabled" "${tmpl[@]}" --set leaderElection.enabled=yes
expect_failure "negative replicas" "replicaCount" "${tmpl[@]}" --set replicaCount=-1
expect_failure "privileged metrics port" "metrics/port" "${tmpl[@]}" --set metrics.port=80
expect_failure "memory limit not a quantity" "resources/limits/memory" "${tmpl[@]}" --set resources.limits.memory=lots
expect_failure "existing ServiceAccount without a name" "serviceAccount.name is required" "${tmpl[@]}" --set serviceAccount.create=false
sha="$(printf '0f%.0s' {1..32})"
expect_failure "digest too short" "/image/digest" "${tmpl[@]}" --set image.digest=sha256:0f0f
expect_failure "digest not sha256" "/workloadImages/trainer/digest" "${tmpl[@]}" --set "workloadImages.trainer.digest=sha512:$sha"
expect_failure "digest in the repository" "/workloadImages/predictor/repository" "${tmpl[@]}" --set "workloadImages.predictor.repository=registry.example.invalid/p@sha256:$sha"
expect_failure "tag in the repository" "/image/repository" "${tmpl[@]}" --set image.repository=registry.example.invalid/op:1.0
expect_failure "allow list entry without a namespace" "secretAllowList/0" "${tmpl[@]}" --set 'secretAllowList[0]=ratings-db'
expect_failure "API server egress without ports" "/networkPolicy/egress/apiServer': missing property 'ports" "${tmpl[@]}" --set networkPolicy.enabled=true --set 'networkPolicy.egress.apiServer.ports=null'
expect_failure "Kubernetes older than 1.30" "kubeVersion" "$HELM" template rec "$CHART" --kube-version 1.29.9

step "promtool: rules, unit tests, mutants, dashboard queries ($("$PROMTOOL" --version 2>&1 | head -1))"
"$PROMTOOL" check rules "$CHART/files/alerts.yaml" >/dev/null
ok "promtool check rules files/alerts.yaml"
# The PrometheusRule as rendered (runbook URL, job name and extra labels edited) is valid too.
"$PYTHON" - "$WORK/namespaced.yaml" "$WORK/rendered-rules.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule"]
yaml.safe_dump({"groups": docs[0]["spec"]["groups"]}, open(sys.argv[2], "w"))
EOF
"$PROMTOOL" check rules "$WORK/rendered-rules.yaml" >/dev/null
ok "promtool check rules on the rendered PrometheusRule"
(cd "$HERE" && "$PROMTOOL" test rules alerts_test.yaml) >"$WORK/promtool-test.log" 2>&1 ||
  { cat "$WORK/promtool-test.log"; die "promtool test rules"; }
ok "promtool test rules alerts_test.yaml: every alert fires after its for: and not before, look-alikes silent"
"$PYTHON" "$HERE/mutate_alerts.py" "$PROMTOOL" >"$WORK/mutants.log" || { cat "$WORK/mutants.log"; die "a broken alert passed the unit tests"; }
ok "mutate_alerts.py: $(tail -1 "$WORK/mutants.log")"
"$PYTHON" "$HERE/dashboard_queries.py" "$CHART/dashboards/recommender-operator.json" "$WORK/dashboard-rules.yaml"
"$PROMTOOL" check rules "$WORK/dashboard-rules.yaml" >/dev/null
ok "every dashboard query parses as PromQL"

step "alert rules and dashboard queries name only words the operator writes"
# The words come from the operator's enums: the freshly built crdgen when RECOMMENDER_BIN_DIR has
# one (tests/all.sh builds the binaries first), else cargo builds it now.
if [ -n "${RECOMMENDER_BIN_DIR:-}" ] && [ -x "$RECOMMENDER_BIN_DIR/crdgen" ]; then
  "$RECOMMENDER_BIN_DIR/crdgen" --vocabulary >"$WORK/vocabulary.json"
else
  (cd "$HERE/../.." && cargo run -q --locked -p recommender-operator --bin crdgen -- --vocabulary) >"$WORK/vocabulary.json" ||
    die "crdgen --vocabulary (set RECOMMENDER_BIN_DIR to a folder with crdgen, or install cargo)"
fi
"$PYTHON" "$HERE/vocabulary.py" "$WORK/vocabulary.json" "$CHART/files/alerts.yaml" "$CHART"/dashboards/*.json
ok "vocabulary.py: every condition type, status, reason and outcome matched is one the operator writes"
"$PYTHON" "$HERE/test_vocabulary.py" "$WORK/vocabulary.json" "$CHART/files/alerts.yaml" "$CHART/dashboards/recommender-operator.json"
ok "test_vocabulary.py: vocabulary.py fails on misspelt and misplaced words"

step "promtool check metrics on scrapes of the real binaries"
bin_dir="${RECOMMENDER_BIN_DIR:-}"
if [ -z "$bin_dir" ]; then
  for d in "$HERE/../../target/release" "$HERE/../../target/debug"; do
    [ -x "$d/recommender-predictor" ] && { bin_dir="$d"; break; }
  done
fi
if [ -n "$bin_dir" ]; then
  bash "$HERE/check_metrics.sh" "$bin_dir"
  passed=$((passed + 1))
else
  echo "note: no built binaries (set RECOMMENDER_BIN_DIR or cargo build first); metrics scrape skipped"
fi

step "CRD in the chart = the generated CRD"
root_crds=("$HERE"/../../crds/*.yaml)
if [ -e "${root_crds[0]}" ]; then
  for f in "${root_crds[@]}"; do
    cmp -s "$f" "$CHART/crds/$(basename "$f")" || die "charts/recommender-operator/crds/$(basename "$f") differs from crds/$(basename "$f") (regenerate with the operator's crdgen)"
  done
  ok "charts/recommender-operator/crds/ matches crds/ (${#root_crds[@]} files)"
else
  echo "note: crds/ has no generated CRD yet; nothing to compare"
fi

step "Dockerfile ($("$HADOLINT" --version))"
"$HADOLINT" "$HERE/../../Dockerfile"
ok "hadolint Dockerfile: no findings"
"$PYTHON" "$HERE/dockerfile_stages.py" "$HERE/../../Dockerfile"
ok "Dockerfile: a distroless, non-root stage per binary, from cargo build --release or the host-binaries stage; base images are ARGs (pinnable by digest); every workspace member is copied"

if [ -z "${KUBECONFIG:-}" ]; then
  printf '\n%d checks passed. KUBECONFIG not set: server-side dry run and RBAC checks skipped.\n' "$passed"
  exit 0
fi

step "server-side dry run and RBAC against the API server of $KUBECONFIG"
KUBECTL="${KUBECTL:-$(dirname "$HELM")/kubectl}"
[ -x "$KUBECTL" ] || KUBECTL="$(command -v kubectl)"
k() { "$KUBECTL" "$@"; }
server_version="$(k version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')" ||
  die "no API server at KUBECONFIG=$KUBECONFIG"

# Throw-away namespaces: the release's and two watched ones (server-side dry run of a namespaced
# object needs its namespace to exist).
id="chart-$(date +%s)-$$"
ns_op="$id-op" ns_a="$id-a" ns_b="$id-b" ns_other="$id-other"
for ns in "$ns_op" "$ns_a" "$ns_b" "$ns_other"; do
  k create namespace "$ns" >/dev/null
  CLEANUP+=("'$KUBECTL' delete namespace '$ns' --wait=false >/dev/null 2>&1")
done
cat >"$WORK/values-cluster.yaml" <<EOF
replicaCount: 2
watchNamespaces: [$ns_a, $ns_b]
rbac: {create: true, secrets: {enabled: true, resourceNames: [db-password]}}
serviceMonitor: {enabled: true}
prometheusRule: {enabled: true}
predictorPodMonitor: {enabled: true}
dashboard: {enabled: true}
EOF

monitoring_crds=1
for crd in servicemonitors podmonitors prometheusrules; do
  k get crd "$crd.monitoring.coreos.com" >/dev/null 2>&1 || monitoring_crds=0
done
dry_run() { # dry_run NAME RENDERED
  local keep="$WORK/$1-dry.yaml"
  "$PYTHON" - "$2" "$keep" "$monitoring_crds" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
if sys.argv[3] != "1":
    docs = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
  k apply --dry-run=server -f "$keep" >"$WORK/$1-dry.log" 2>&1 || { cat "$WORK/$1-dry.log"; die "server-side dry run ($1)"; }
  ok "kubectl apply --dry-run=server: $1 ($(grep -c . "$WORK/$1-dry.log") objects accepted)"
}
"$HELM" template rec "$CHART" -n "$ns_op" --kube-version "$server_version" >"$WORK/server-default.yaml"
dry_run default "$WORK/server-default.yaml"
"$HELM" template rec "$CHART" -n "$ns_op" --kube-version "$server_version" -f "$WORK/values-cluster.yaml" >"$WORK/server-namespaced.yaml"
dry_run namespaced "$WORK/server-namespaced.yaml"
if [ "$monitoring_crds" = 0 ]; then
  echo "note: monitoring.coreos.com CRDs are not installed on this server; ServiceMonitor, PodMonitor and PrometheusRule were left out of the dry run (rendered and checked offline above)"
fi
crd_files=("$CHART"/crds/*.yaml)
if [ -e "${crd_files[0]}" ]; then
  k apply --dry-run=server -f "$CHART/crds/" >/dev/null
  ok "kubectl apply --dry-run=server: crds/"
fi

# A real install of the namespaced configuration, without the monitoring objects when their CRDs
# are missing; the operator pods need not run for the RBAC checks below.
set_monitoring=()
[ "$monitoring_crds" = 1 ] || set_monitoring=(--set serviceMonitor.enabled=false --set prometheusRule.enabled=false --set predictorPodMonitor.enabled=false)
"$HELM" install rec "$CHART" -n "$ns_op" -f "$WORK/values-cluster.yaml" "${set_monitoring[@]}" >"$WORK/install.log" ||
  { cat "$WORK/install.log"; die "helm install"; }
CLEANUP+=("'$HELM' uninstall rec -n '$ns_op' >/dev/null 2>&1")
ok "helm install into $ns_op watching $ns_a,$ns_b"

# SubjectAccessReviews as the operator's ServiceAccount (with its groups), by API group and
# resource: no discovery involved, so they also work before the RecommenderModel CRD exists.
sa_user="system:serviceaccount:$ns_op:rec-recommender-operator"
allowed() { # allowed VERB GROUP RESOURCE SUBRESOURCE NAME NAMESPACE -> prints true or false
  k create -o jsonpath='{.status.allowed}' -f - <<EOF
apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: "$sa_user"
  groups: [system:serviceaccounts, "system:serviceaccounts:$ns_op", system:authenticated]
  resourceAttributes: {verb: "$1", group: "$2", resource: "$3", subresource: "$4", name: "$5", namespace: "$6"}
EOF
}
# Columns: expectation, verb, group (- for core), resource, subresource (-), name (-), namespace
# (- for cluster-wide); @a @b @op @other stand for the throw-away namespaces.
access_table() {
  local ns
  for ns in @a @b; do
    cat <<EOF
allow get recommender.dev recommendermodels - - $ns
allow watch recommender.dev recommendermodels - - $ns
allow patch recommender.dev recommendermodels status - $ns
allow update recommender.dev recommendermodels finalizers - $ns
allow create batch jobs - - $ns
allow patch batch jobs - - $ns
allow watch batch jobs - - $ns
allow get apps deployments - - $ns
allow patch apps deployments - - $ns
allow patch - services - - $ns
allow create autoscaling horizontalpodautoscalers - - $ns
allow patch autoscaling horizontalpodautoscalers - - $ns
allow delete autoscaling horizontalpodautoscalers - - $ns
deny get autoscaling horizontalpodautoscalers - - $ns
deny list autoscaling horizontalpodautoscalers - - $ns
allow create policy poddisruptionbudgets - - $ns
allow patch policy poddisruptionbudgets - - $ns
allow delete policy poddisruptionbudgets - - $ns
deny get policy poddisruptionbudgets - - $ns
allow create networking.k8s.io networkpolicies - - $ns
allow patch networking.k8s.io networkpolicies - - $ns
allow delete networking.k8s.io networkpolicies - - $ns
deny get networking.k8s.io networkpolicies - - $ns
deny list networking.k8s.io networkpolicies - - $ns
deny patch apps deployments scale - $ns
allow list - pods - - $ns
allow watch - pods - - $ns
allow create events.k8s.io events - - $ns
allow patch - events - - $ns
allow get - secrets - db-password $ns
deny get - secrets - other-secret $ns
deny list - secrets - - $ns
deny watch - secrets - - $ns
deny update - secrets - db-password $ns
deny delete recommender.dev recommendermodels - - $ns
deny patch recommender.dev recommendermodels - - $ns
deny update recommender.dev recommendermodels - - $ns
deny update recommender.dev recommendermodels status - $ns
deny delete batch jobs - - $ns
deny delete apps deployments - - $ns
deny delete - services - - $ns
deny get - persistentvolumeclaims - - $ns
deny delete - persistentvolumeclaims - - $ns
deny get - pods - - $ns
deny create - pods - - $ns
deny create - pods exec - $ns
deny update - pods status - $ns
deny get - configmaps - - $ns
allow create - configmaps - - $ns
allow patch - configmaps - - $ns
deny delete - configmaps - - $ns
deny create rbac.authorization.k8s.io roles - - $ns
deny create rbac.authorization.k8s.io rolebindings - - $ns
deny get coordination.k8s.io leases - rec-recommender-operator $ns
EOF
  done
  cat <<'EOF'
deny list recommender.dev recommendermodels - - @other
deny create batch jobs - - @other
deny delete autoscaling horizontalpodautoscalers - - @other
deny delete policy poddisruptionbudgets - - @other
deny get - secrets - db-password @other
deny list recommender.dev recommendermodels - - -
deny list - pods - - -
deny list - nodes - - -
deny create rbac.authorization.k8s.io clusterrolebindings - - -
deny get - secrets - db-password @op
deny list - pods - - @op
allow create coordination.k8s.io leases - - @op
allow get coordination.k8s.io leases - rec-recommender-operator @op
allow update coordination.k8s.io leases - rec-recommender-operator @op
allow patch coordination.k8s.io leases - rec-recommender-operator @op
deny update coordination.k8s.io leases - someone-else @op
deny delete coordination.k8s.io leases - rec-recommender-operator @op
deny update coordination.k8s.io leases - kube-scheduler kube-system
EOF
}
checked=0
while read -r want verb group resource sub name ns; do
  [ "$group" = - ] && group=""
  [ "$sub" = - ] && sub=""
  [ "$name" = - ] && name=""
  case "$ns" in -) ns="" ;; @a) ns="$ns_a" ;; @b) ns="$ns_b" ;; @op) ns="$ns_op" ;; @other) ns="$ns_other" ;; esac
  got="$(allowed "$verb" "$group" "$resource" "$sub" "$name" "$ns")"
  what="$verb ${group:-core}/$resource${sub:+/$sub}${name:+ $name} in ${ns:-the cluster}"
  case "$want:$got" in
    allow:true | deny:false) checked=$((checked + 1)) ;;
    allow:*) die "operator ServiceAccount denied: $what" ;;
    *) die "operator ServiceAccount allowed: $what" ;;
  esac
done < <(access_table)
ok "SubjectAccessReview as the operator: $checked expectations hold (allowed what it uses in watched namespaces and its own Lease; denied other Secrets, other verbs, other namespaces, cluster scope)"

printf '\n%d checks passed, including the API server at KUBECONFIG.\n' "$passed"
