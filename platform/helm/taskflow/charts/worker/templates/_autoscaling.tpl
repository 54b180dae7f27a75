{{/* Whether KEDA must authenticate to the API: exactly when the API has authentication on. */}}
{{- define "taskflow.worker.autoscalerAuth" -}}
{{- if eq (toString (.Values.global.config.TASKFLOW_AUTH_ENABLED | default "false")) "true" }}true{{ end -}}
{{- end -}}

{{/* The URL KEDA polls: the release's API Service, in-cluster. */}}
{{- define "taskflow.worker.queueUrl" -}}
{{- .Values.autoscaling.keda.url | default (printf "http://%s.%s.svc.cluster.local:%v/api/v1/queue" (include "taskflow.componentName" (list . "api")) .Release.Namespace .Values.global.apiServicePort) -}}
{{- end -}}
