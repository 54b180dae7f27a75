{{/* Whether KEDA must authenticate to the API: exactly when the API has authentication on. */}}
{{- define "taskflow.worker.autoscalerAuth" -}}
{{- if eq (toString (.Values.global.config.TASKFLOW_AUTH_ENABLED | default "false")) "true" }}true{{ end -}}
{{- end -}}

{{/* The URL KEDA polls for one pool: GET /api/v1/load with the pool's queues, on the release's API Service
     in-cluster unless autoscaling.keda.apiUrl names another. (list $ pool) */}}
{{- define "taskflow.worker.loadUrl" -}}
{{- $ctx := index . 0 -}}
{{- $pool := index . 1 -}}
{{- $base := $pool.autoscaling.keda.apiUrl | default (printf "http://%s.%s.svc.cluster.local:%v" (include "taskflow.componentName" (list $ctx "api")) $ctx.Release.Namespace $ctx.Values.global.apiServicePort) -}}
{{- $query := list -}}
{{- range $pool.queueNames }}{{ $query = append $query (printf "queue=%s" .) }}{{ end -}}
{{- printf "%s/api/v1/load?%s" (trimSuffix "/" $base) (join "&" $query) -}}
{{- end -}}
