{{/*
Named templates shared by the umbrella chart and its api and worker subcharts.
Everything the components must agree on (resource names, the Secret and ConfigMap, the image tag, the security
baseline) is computed here from .Release and .Values.global only, which every chart of the release sees alike.
Templates that take a component get a list: (list $ "api").
*/}}

{{/* Release-wide base name, at most 40 characters so "<base>-postgresql-headless" still fits 63. */}}
{{- define "taskflow.fullname" -}}
{{- $global := .Values.global | default dict -}}
{{- if $global.fullnameOverride -}}
{{- $global.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "taskflow" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-taskflow" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>": (list $ "api") */}}
{{- define "taskflow.componentName" -}}
{{- printf "%s-%s" (include "taskflow.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* The image tag both images use: global.image.tag (environments/<env>/version.yaml), else the appVersion. */}}
{{- define "taskflow.imageTag" -}}
{{- .Values.global.image.tag | default .Chart.AppVersion | toString -}}
{{- end -}}

{{/* "registry/repository:tag" for a component's image: (list $ .Values.image) */}}
{{- define "taskflow.image" -}}
{{- $ctx := index . 0 -}}
{{- $image := index . 1 -}}
{{- $registry := $image.registry | default $ctx.Values.global.image.registry -}}
{{- $ref := printf "%s:%s" $image.repository (include "taskflow.imageTag" $ctx) -}}
{{- if $ctx.Values.global.image.digest -}}{{- $ref = printf "%s@%s" $ref $ctx.Values.global.image.digest -}}{{- end -}}
{{- if $registry -}}{{- printf "%s/%s" $registry $ref -}}{{- else -}}{{- $ref -}}{{- end -}}
{{- end -}}

{{/* Selector labels: stable for the life of a Deployment, so never the version. (list $ "api") */}}
{{- define "taskflow.selectorLabels" -}}
app.kubernetes.io/name: taskflow
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Standard labels for every object: (list $ "api") */}}
{{- define "taskflow.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "taskflow.selectorLabels" . }}
app.kubernetes.io/version: {{ include "taskflow.imageTag" $ctx | trunc 63 | quote }}
app.kubernetes.io/part-of: taskflow
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata: name, namespace and labels of a component's object: (list $ "api") or (list $ "api" "suffix") */}}
{{- define "taskflow.metadata" -}}
{{- $ctx := index . 0 -}}
{{- $name := include "taskflow.componentName" (list $ctx (index . 1)) -}}
{{- if gt (len .) 2 }}{{ $name = printf "%s-%s" $name (index . 2) }}{{ end -}}
name: {{ $name }}
namespace: {{ $ctx.Release.Namespace }}
labels:
  {{- include "taskflow.labels" (list $ctx (index . 1)) | nindent 2 }}
{{- end -}}

{{/* The ConfigMap of TASKFLOW_* settings (rendered by the umbrella). */}}
{{- define "taskflow.configMapName" -}}
{{- include "taskflow.componentName" (list . "config") -}}
{{- end -}}

{{/* The Secret with keys database-url, redis-url, api-keys: global.secrets.existingSecret, else the chart's own. */}}
{{- define "taskflow.secretName" -}}
{{- .Values.global.secrets.existingSecret | default (include "taskflow.componentName" (list . "secrets")) -}}
{{- end -}}

{{/* Pod security baseline (restricted profile), with a component's podSecurityContext merged over it. */}}
{{- define "taskflow.podSecurityContext" -}}
{{- $ctx := index . 0 -}}
{{- toYaml (mergeOverwrite (deepCopy $ctx.Values.global.podSecurityContext) (index . 1 | default dict)) -}}
{{- end -}}

{{/* Container security baseline (restricted profile), with a component's securityContext merged over it. */}}
{{- define "taskflow.containerSecurityContext" -}}
{{- $ctx := index . 0 -}}
{{- toYaml (mergeOverwrite (deepCopy $ctx.Values.global.containerSecurityContext) (index . 1 | default dict)) -}}
{{- end -}}

{{/* Pod-level settings every TaskFlow pod shares: service account, pull secrets, security, topology, placement.
     (list $ "api" .Values) — the component's values carry podSecurityContext, topologySpreadConstraints,
     nodeSelector, tolerations, affinity, priorityClassName. An optional fourth item, a YAML string of labels,
     replaces the component's selector labels in the spread (a worker pool spreads its own pods). */}}
{{- define "taskflow.podSpecCommon" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
{{- $values := index . 2 -}}
{{- $spread := $values.topologySpread | default dict -}}
{{- $spreadLabels := include "taskflow.selectorLabels" (list $ctx $component) -}}
{{- if gt (len .) 3 }}{{ $spreadLabels = index . 3 }}{{ end -}}
automountServiceAccountToken: false
{{- with $ctx.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "taskflow.podSecurityContext" (list $ctx $values.podSecurityContext) | nindent 2 }}
{{- if $spread.enabled }}
topologySpreadConstraints:
  {{- range $spread.topologyKeys }}
  - maxSkew: {{ $spread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $spread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- $spreadLabels | nindent 8 }}
  {{- end }}
{{- end }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Settings for a TaskFlow container: the ConfigMap, then the credentials from the Secret by key. */}}
{{- define "taskflow.envFrom" -}}
- configMapRef:
    name: {{ include "taskflow.configMapName" . }}
{{- end -}}

{{/* Whether TASKFLOW_DATABASE_URL goes through a transaction-pooling PgBouncer (global.postgresql.external.pooler). */}}
{{- define "taskflow.pooled" -}}
{{- $pooler := .Values.global.postgresql.external.pooler -}}
{{- if $pooler.enabled -}}
{{- if .Values.global.postgresql.enabled -}}
{{- fail "global.postgresql.external.pooler: for an external PostgreSQL with a PgBouncer in front (Azure's built-in one); the in-cluster PostgreSQL (global.postgresql.enabled) has none" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* A postgresql:// URL moved to the pooler's port on the same host (user, password, database and options kept):
     (list $ url) */}}
{{- define "taskflow.pooledUrl" -}}
{{- $ctx := index . 0 -}}
{{- $url := urlParse (index . 1) -}}
{{- $host := regexReplaceAll ":[0-9]+$" $url.host "" -}}
{{- $_ := set $url "host" (printf "%s:%v" $host $ctx.Values.global.postgresql.external.pooler.port) -}}
{{- urlJoin $url -}}
{{- end -}}

{{/* Credentials as env entries: (list $ true) also maps api-keys (only the API needs it). The Secret's database-url
     is always the direct one; with the pooler on, TASKFLOW_DATABASE_URL reads database-pooled-url instead and
     TASKFLOW_DATABASE_DIRECT_URL (the LISTEN connection, the leader lock, migrations) reads database-url. */}}
{{- define "taskflow.secretEnv" -}}
{{- $ctx := index . 0 -}}
{{- $secret := include "taskflow.secretName" $ctx -}}
{{- $pooled := include "taskflow.pooled" $ctx -}}
- name: TASKFLOW_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary "database-pooled-url" "database-url" (eq $pooled "true") }}
{{- if $pooled }}
- name: TASKFLOW_DATABASE_DIRECT_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: database-url
{{- end }}
- name: TASKFLOW_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: redis-url
- name: TASKFLOW_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: webhook-secret
      # Optional: without it callbacks are off (docs/callbacks.md).
      optional: true
{{- if index . 1 }}
- name: TASKFLOW_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: api-keys
      # Optional: development runs without authentication and needs no keys.
      optional: true
{{- end }}
{{- end -}}

{{/* The Secrets Store CSI volume that keeps the Secret synced from Azure Key Vault (global.secrets.keyVault):
     the driver syncs only while a pod mounts the volume, so every pod that reads the Secret mounts it. Empty when
     the Key Vault sync is off. */}}
{{- define "taskflow.keyVaultVolume" -}}
{{- if .Values.global.secrets.keyVault.enabled }}
- name: secrets-store
  csi:
    driver: secrets-store.csi.k8s.io
    readOnly: true
    volumeAttributes:
      secretProviderClass: {{ include "taskflow.componentName" (list . "keyvault") }}
{{- end }}
{{- end -}}

{{/* global.secrets.keyVault.objects as YAML, without database-pooled-url while the pooler is off (a vault without that
     secret must still mount). */}}
{{- define "taskflow.keyVaultObjects" -}}
{{- $objects := deepCopy .Values.global.secrets.keyVault.objects -}}
{{- if not (include "taskflow.pooled" .) }}{{ $_ := unset $objects "database-pooled-url" }}{{ end -}}
{{- toYaml $objects -}}
{{- end -}}

{{- define "taskflow.keyVaultVolumeMount" -}}
{{- if .Values.global.secrets.keyVault.enabled }}
- name: secrets-store
  mountPath: /mnt/secrets-store
  readOnly: true
{{- end }}
{{- end -}}

{{/* A writable /tmp on a read-only root filesystem. */}}
{{- define "taskflow.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.global.tmpSizeLimit }}
{{- end -}}

{{- define "taskflow.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* A PodDisruptionBudget for a component: (list $ "api" .Values.podDisruptionBudget) */}}
{{- define "taskflow.podDisruptionBudget" -}}
{{- $ctx := index . 0 -}}
{{- $pdb := index . 2 -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "taskflow.metadata" (list $ctx (index . 1)) | nindent 2 }}
spec:
  {{- if hasKey $pdb "maxUnavailable" }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- else }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "taskflow.selectorLabels" (list $ctx (index . 1)) | nindent 6 }}
{{- end -}}

{{/* A ServiceAccount that mounts no token (no TaskFlow process talks to the Kubernetes API), annotated with the
     component's Azure workload identity when global.azureWorkloadIdentity is on: (list $ "api") */}}
{{- define "taskflow.serviceAccount" -}}
{{- $ctx := index . 0 -}}
{{- $wi := $ctx.Values.global.azureWorkloadIdentity -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "taskflow.metadata" . | nindent 2 }}
  {{- if $wi.enabled }}
  {{- $key := printf "%sClientId" (index . 1) }}
  annotations:
    azure.workload.identity/client-id: {{ required (printf "global.azureWorkloadIdentity.%s: client ID of the %s's workload identity (terraform output -raw %s_identity_client_id)" $key (index . 1) (index . 1)) (index $wi $key) | quote }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}

{{/* The pod label that has the AKS workload identity webhook inject the identity's token (global.azureWorkloadIdentity). */}}
{{- define "taskflow.workloadIdentityLabel" -}}
{{- if .Values.global.azureWorkloadIdentity.enabled }}
azure.workload.identity/use: "true"
{{- end }}
{{- end -}}

{{/* Egress a TaskFlow process needs and nothing more: DNS, PostgreSQL, Redis (and what the component adds).
     (list $ extraEgress) */}}
{{- define "taskflow.networkPolicyEgress" -}}
{{- $ctx := index . 0 -}}
{{- $np := $ctx.Values.global.networkPolicy -}}
- to:
    {{- toYaml $np.dns.to | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- range $service := list "postgresql" "redis" }}
{{- $target := index $np $service }}
- to:
    {{- if index $ctx.Values.global $service "enabled" }}
    - podSelector:
        matchLabels:
          {{- include "taskflow.selectorLabels" (list $ctx $service) | nindent 10 }}
    {{- else if $target.to }}
    {{- toYaml $target.to | nindent 4 }}
    {{- else }}
    {{- fail (printf "global.networkPolicy.%s.to: name where the external %s lives (ipBlock, namespaceSelector...) or set global.networkPolicy.enabled=false" $service $service) }}
    {{- end }}
  ports:
    - port: {{ $target.port }}
      protocol: TCP
    {{- if and (eq $service "postgresql") (include "taskflow.pooled" $ctx) }}
    - port: {{ $ctx.Values.global.postgresql.external.pooler.port }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- with index . 1 }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Migration runs only when enabled; as init containers with in-cluster PostgreSQL, else as a hook Job. */}}
{{- define "taskflow.migrateInPods" -}}
{{- if and .Values.global.migration.enabled .Values.global.postgresql.enabled }}true{{ end -}}
{{- end -}}

{{/* The container that applies the migrations: (list $ image) — both images ship taskflow-migrate. */}}
{{- define "taskflow.migrationContainer" -}}
{{- $ctx := index . 0 -}}
- name: migrate
  image: {{ index . 1 }}
  imagePullPolicy: {{ $ctx.Values.global.image.pullPolicy }}
  command: ["taskflow-migrate"]
  env:
    {{- /* Inline, not from the ConfigMap: a pre-install hook runs before the release's ConfigMap exists. */}}
    {{- range $key, $value := $ctx.Values.global.config }}
    - name: {{ $key }}
      value: {{ $value | toString | quote }}
    {{- end }}
    {{- include "taskflow.secretEnv" (list $ctx false) | nindent 4 }}
  resources:
    {{- toYaml $ctx.Values.global.migration.resources | nindent 4 }}
  securityContext:
    {{- include "taskflow.containerSecurityContext" (list $ctx dict) | nindent 4 }}
  volumeMounts:
    {{- include "taskflow.tmpVolumeMount" $ctx | nindent 4 }}
    {{- with include "taskflow.keyVaultVolumeMount" $ctx }}{{ trim . | nindent 4 }}{{ end }}
{{- end -}}

{{/* metadata of a Prometheus Operator object (ServiceMonitor, PodMonitor, PrometheusRule): the component's metadata
     with global.metrics.labels merged in, the labels the operator's *Selector (e.g. release: …) matches.
     (list $ "api") */}}
{{- define "taskflow.monitoringMetadata" -}}
{{- $ctx := index . 0 -}}
{{- $labels := include "taskflow.labels" . | fromYaml -}}
name: {{ include "taskflow.componentName" . }}
namespace: {{ $ctx.Release.Namespace }}
labels:
  {{- toYaml (merge (deepCopy ($ctx.Values.global.metrics.labels | default dict)) $labels) | nindent 2 }}
{{- end -}}

{{/* An ingress rule admitting Prometheus (global.metrics.scrapeFrom) to a port while a monitor scrapes it:
     (list $ "http") */}}
{{- define "taskflow.scrapeIngress" -}}
{{- $ctx := index . 0 -}}
{{- if not $ctx.Values.global.metrics.scrapeFrom }}
{{- fail "global.metrics.scrapeFrom: where Prometheus runs (NetworkPolicy peers), or set global.networkPolicy.enabled=false" }}
{{- end }}
- from:
    {{- toYaml $ctx.Values.global.metrics.scrapeFrom | nindent 4 }}
  ports:
    - port: {{ index . 1 }}
      protocol: TCP
{{- end -}}
