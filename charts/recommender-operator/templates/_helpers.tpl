{{/* Chart name, overridable with nameOverride. */}}
{{- define "recommender-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or just the release name when it already contains the chart name.
Truncated to 52 characters so that suffixes such as "-metrics" still fit DNS label limits.
*/}}
{{- define "recommender-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "recommender-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The standard app.kubernetes.io labels, on every object the chart renders. */}}
{{- define "recommender-operator.labels" -}}
helm.sh/chart: {{ include "recommender-operator.chart" . }}
{{ include "recommender-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: recommender-operator
{{- end }}

{{/* Immutable once a Deployment exists, so only name, instance and component. */}}
{{- define "recommender-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recommender-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The selector labels as KEY=VALUE,KEY=VALUE, for --operator-pod-labels. */}}
{{- define "recommender-operator.selectorLabelsFlag" -}}
{{- $pairs := list }}
{{- range $key, $value := include "recommender-operator.selectorLabels" . | fromYaml }}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{- define "recommender-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recommender-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: repository@digest when a digest is set (the tag
is then ignored: the digest alone says which image runs, and a tag beside it would suggest it
counts), else repository:tag, the chart's appVersion for an empty tag.
Call: include "recommender-operator.imageRef" (dict "image" .Values.image "root" $)
*/}}
{{- define "recommender-operator.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* "true" or "false": leader election is "auto" (on when replicaCount > 1) unless forced. */}}
{{- define "recommender-operator.leaderElection" -}}
{{- $enabled := .Values.leaderElection.enabled }}
{{- if eq (toString $enabled) "auto" }}
{{- gt (int .Values.replicaCount) 1 }}
{{- else }}
{{- $enabled }}
{{- end }}
{{- end }}

{{- define "recommender-operator.leaseName" -}}
{{- default (include "recommender-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Namespace of an optional monitoring object: its own setting, else the release namespace. */}}
{{- define "recommender-operator.namespaceOr" -}}
{{- default .root.Release.Namespace .namespace }}
{{- end }}
