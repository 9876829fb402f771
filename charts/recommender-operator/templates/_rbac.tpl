{{/*
The rules the operator needs in every namespace it watches, and nothing more. Each rule says
which part of the operator uses it. Granted by a ClusterRole when all namespaces are watched, or
by a Role in each namespace of watchNamespaces.
*/}}
{{- define "recommender-operator.watchRules" -}}
# RecommenderModels: watched by the controller, and read afresh (GET) before each decision. The
# operator never writes a model's spec or metadata (the retrain annotation is the user's).
- apiGroups: ["recommender.dev"]
  resources: ["recommendermodels"]
  verbs: ["get", "list", "watch"]
# Status is written with server-side apply (PATCH) on the status subresource, nothing else.
- apiGroups: ["recommender.dev"]
  resources: ["recommendermodels/status"]
  verbs: ["patch"]
# Children carry an ownerReference with blockOwnerDeletion; API servers that enforce
# OwnerReferencesPermissionEnforcement require update on the owner's finalizers for that.
- apiGroups: ["recommender.dev"]
  resources: ["recommendermodels/finalizers"]
  verbs: ["update"]
# Trainer, trial, evaluation and cleanup Jobs: listed and watched per model, created by server-side apply (an apply that creates
# needs create as well as patch). Never deleted: finished Jobs expire by their TTL, and the
# garbage collector removes the rest with their model.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "patch"]
# Tuning trial plans (spec.tuning): one ConfigMap per rung, applied server-side after the rung's
# Job, which mounts it and owns it; never read back (status.tuning holds the plan) and never
# deleted (the garbage collector removes it with the Job).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "patch"]
# The predictor Deployment: read for its rollout, applied server-side; never deleted (see Jobs).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The predictor's ReplicaSets: listed by the online collector, which reads the stats only of
# pods whose ReplicaSet the model's own Deployment controls.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
# The predictor Service: watched and applied server-side; never deleted.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch"]
# The predictor's HorizontalPodAutoscaler (spec.predictor.autoscaling) and PodDisruptionBudget
# (more than one replica): applied server-side, deleted when no longer wanted. Never read: the
# predictor Deployment's managed fields say whether they may exist.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch", "delete"]
# The predictor's NetworkPolicy (spec.predictor.networkPolicy): applied server-side, deleted when
# the spec drops it. Never read: an annotation on the predictor Deployment says whether it exists.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create", "patch", "delete"]
# Trainer pods: the report is the finished container's termination message, part of the pod's
# status, which a LIST of pods returns (so no pods/status rule). Also stuck-pod health.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events for transitions; kube's Recorder creates them and patches a repeated one.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Attach and mount failures of a model's pods (reasons FailedAttachVolume and FailedMount),
# listed by reason while a pod of a model kept on a claim waits to start: ModelStoreReachable
# names the pod that cannot attach the claim.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
{{- if .Values.rbac.secrets.enabled }}
# The Secrets a model points at (the PostgreSQL password and CA, the model store's key pair and
# CA), labelled recommender.dev/allow=true: GET by name only, never list or watch.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
  {{- with .Values.rbac.secrets.resourceNames }}
  resourceNames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
