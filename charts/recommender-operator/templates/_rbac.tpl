{{/*
The rules the operator needs in every namespace it watches, and nothing more. Each rule says
which part of the operator uses it. Granted by a ClusterRole when all namespaces are watched, or
by a Role in each namespace of watchNamespaces.
*/}}
{{- define "recommender-operator.watchRules" -}}
# RecommenderModels: watched by the controller, and patched for metadata it owns (e.g. clearing the
# retrain-request annotation once a run has started).
- apiGroups: ["recommender.dev"]
  resources: ["recommendermodels"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Status is written with server-side apply on the status subresource.
- apiGroups: ["recommender.dev"]
  resources: ["recommendermodels/status"]
  verbs: ["get", "patch", "update"]
# Children carry an ownerReference with blockOwnerDeletion; API servers that enforce
# OwnerReferencesPermissionEnforcement require update on the owner's finalizers for that.
- apiGroups: ["recommender.dev"]
  resources: ["recommendermodels/finalizers"]
  verbs: ["update"]
# Trainer Jobs, predictor Deployments and Services: owned children, applied server-side and
# deleted when superseded.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The model store claim is the user's: read to check it exists and is bound, never changed.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch"]
# Trainer pods: the report is the finished container's termination message, part of the pod's
# status, which a plain GET/LIST of pods returns (so no pods/status rule). Also stuck-pod health.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events for transitions; kube's Recorder creates them and patches a repeated one.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.secrets.enabled }}
# The PostgreSQL password Secret a model points at: GET by name only, never list or watch.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
  {{- with .Values.rbac.secrets.resourceNames }}
  resourceNames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
