{{/* The chart name, or nameOverride. */}}
{{- define "colonies-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: the release name, with the chart name unless it is in it already. */}}
{{- define "colonies-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's pod; they never change between versions. */}}
{{- define "colonies-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "colonies-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "colonies-operator.labels" -}}
{{ include "colonies-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: colonyos
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "colonies-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "colonies-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The leader election's Lease: leaderElection.leaseName, else "<full name>-leader". */}}
{{- define "colonies-operator.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (printf "%s-leader" (include "colonies-operator.fullname" .)) }}
{{- end }}

{{/*
The namespaces that get a Role and RoleBinding: watchNamespaces, else the release namespace.
*/}}
{{- define "colonies-operator.roleNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson .Values.watchNamespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/*
Exactly what the operator does with the Kubernetes API (colonies_operator/checks.py
PERMISSIONS lists the same, and `colonies-operator check` asks for each of them):
- Jobs: one per process, created, followed through one label-selected list+watch per
  namespace, annotated (patch) once reported, deleted when a process ends early. Never read
  one by one (no get).
- Pods: followed through the same label-selected list+watch; pods/log: logs are streamed.
- Events: created on ColonyExecutors and Jobs (the operator's own and kopf's); listed for a
  Job whose pods the Job controller cannot create (its FailedCreate Events say why).
- Secrets, get: the colony key (spec.colonyKeySecretRef), an executor key
  (spec.executorKeySecretRef, or "<name>-executor-key" left by an earlier version) and the
  Colonies server's CA bundle (spec.server.caSecretRef). Never create: an executor key nobody
  names is derived from the colony key (create on Secrets would let its holder mint a token
  for any ServiceAccount of the namespace). resourceNames cannot narrow get: the names are
  whatever the ColonyExecutors say. No list or watch: the operator cannot enumerate Secrets.
- ColonyExecutors: kopf lists and watches them and patches its finalizer
  (colonyos.io/finalizer) and annotations (never a get); the operator patches their status
  subresource.
tests/integration/test_zz_rbac.py holds these rules to the requests the operator made in the
whole integration suite, read from the apiserver's audit log.
*/}}
{{- define "colonies-operator.rules" -}}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
- apiGroups: ["colonyos.io"]
  resources: ["colonyexecutors"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["colonyos.io"]
  resources: ["colonyexecutors/status"]
  verbs: ["patch"]
{{- end }}
