{{/*
Names, labels and the shared pieces of pod specs. Every template builds its objects from these, so a
name, a label or a security setting is written once.
*/}}

{{- define "adf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource-name prefix, kept short enough for the "-heartbeat-token" suffix. */}}
{{- define "adf.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "adf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: include "adf.selectorLabels" (list $ "operator") */}}
{{- define "adf.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "adf.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component's objects: include "adf.labels" (list $ "operator") */}}
{{- define "adf.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "adf.chart" $root }}
{{ include "adf.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: active-data-flow
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end }}

{{/* Name of one component's objects: include "adf.componentName" (list $ "heartbeat") */}}
{{- define "adf.componentName" -}}
{{- printf "%s-%s" (include "adf.fullname" (index . 0)) (index . 1) }}
{{- end }}

{{/* ServiceAccount of a component: include "adf.serviceAccountName" (list $ "operator") */}}
{{- define "adf.serviceAccountName" -}}
{{- $root := index . 0 }}
{{- $sa := (index $root.Values (index . 1)).serviceAccount }}
{{- if $sa.create }}
{{- default (include "adf.componentName" .) $sa.name }}
{{- else }}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false" (index . 1) (index . 1)) $sa.name }}
{{- end }}
{{- end }}

{{- define "adf.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespaces the operator and the heartbeat handle; empty in cluster-wide mode. */}}
{{- define "adf.watchNamespaces" -}}
{{- if eq .Values.watch.scope "namespaces" }}
{{- if not .Values.watch.namespaces }}
{{- fail "watch.namespaces must name at least one namespace when watch.scope is \"namespaces\"" }}
{{- end }}
{{- join "," (uniq .Values.watch.namespaces) }}
{{- end }}
{{- end }}

{{/* The heartbeat token Secret: the user's existing one, or the chart's own. */}}
{{- define "adf.heartbeat.secretName" -}}
{{- default (printf "%s-heartbeat-token" (include "adf.fullname" .)) .Values.heartbeat.token.existingSecret }}
{{- end }}

{{- define "adf.heartbeat.secretKey" -}}
{{- if .Values.heartbeat.token.existingSecret }}
{{- .Values.heartbeat.token.existingSecretKey }}
{{- else }}
{{- "token" }}
{{- end }}
{{- end }}

{{/* The heartbeat Service's port-and-host, as the pinger reaches it inside the cluster. */}}
{{- define "adf.heartbeat.url" -}}
{{- if .Values.pinger.url }}
{{- .Values.pinger.url }}
{{- else }}
{{- printf "http://%s.%s.svc:%d/heartbeat" (include "adf.componentName" (list . "heartbeat")) .Release.Namespace (int .Values.heartbeat.service.port) }}
{{- end }}
{{- end }}

{{- define "adf.tokenDir" -}}
/etc/adf/heartbeat
{{- end }}

{{/* Volume and mount of the token, for the heartbeat and the pinger. */}}
{{- define "adf.tokenVolume" -}}
- name: heartbeat-token
  secret:
    secretName: {{ include "adf.heartbeat.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "adf.heartbeat.secretKey" . }}
        path: token
{{- end }}

{{- define "adf.tokenMount" -}}
- name: heartbeat-token
  mountPath: {{ include "adf.tokenDir" . }}
  readOnly: true
{{- end }}

{{/* Writable /tmp for a read-only root filesystem. */}}
{{- define "adf.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "adf.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Image, pull policy and security context shared by every container. */}}
{{- define "adf.containerBase" -}}
image: {{ include "adf.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}

{{/* Pod-level settings shared by every pod: include "adf.podBase" (list $ .Values.operator) */}}
{{- define "adf.podBase" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
RBAC rules. The operator reads and writes DataFlows, DataFlowRuns and Jobs, reads pods (for the run
summary in the termination message) and posts events; it never reads Secrets: run pods get them
through secretKeyRef env vars resolved by the kubelet.
*/}}
{{- define "adf.rules.operator" -}}
- apiGroups: ["activedataflow.io"]
  resources: ["dataflows"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["activedataflow.io"]
  resources: ["dataflows/status"]
  verbs: ["get", "patch"]
- apiGroups: ["activedataflow.io"]
  resources: ["dataflowruns"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: ["activedataflow.io"]
  resources: ["dataflowruns/status"]
  verbs: ["get", "patch"]
{{- /* owner references with blockOwnerDeletion, where OwnerReferencesPermissionEnforcement is on */}}
- apiGroups: ["activedataflow.io"]
  resources: ["dataflows/finalizers", "dataflowruns/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The heartbeat lists DataFlows and patches the due ones' trigger annotation (it never watches).
Its dashboard, when enabled, reads the same DataFlows and patches their run-now annotation and
spec.suspend; reads runs and deletes finished ones (purge; their Jobs and pods go by owner
reference); and, for a run's page, reads its Job, lists its pods and the events about it.
*/}}
{{- define "adf.rules.heartbeat" -}}
- apiGroups: ["activedataflow.io"]
  resources: ["dataflows"]
  verbs: ["get", "list", "patch"]
{{- if .Values.heartbeat.dashboard.enabled }}
- apiGroups: ["activedataflow.io"]
  resources: ["dataflowruns"]
  verbs: ["get", "list", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods", "events"]
  verbs: ["list"]
{{- end }}
{{- end }}

{{/* Cluster-scoped reads kopf needs in every mode: it checks the CRDs it serves. */}}
{{- define "adf.rules.operatorCluster" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if not (include "adf.watchNamespaces" .) }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- end }}

{{/* The pod's own address, so a bind address may be "$(POD_IP)". */}}
{{- define "adf.podIPEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end }}
