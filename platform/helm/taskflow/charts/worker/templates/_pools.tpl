{{/* The pools of worker.pools with the shared settings resolved, as JSON {"pools": [...]}: each pool carries its
     name, fullname (<release>-worker-<name>), queues ("critical:3,default:1"), queueNames, concurrency, the
     settings it may override, autoscaling (merged over worker.autoscaling) and targetValue, the work one replica
     holds (concurrency × targetUtilisation). Fails, naming the value, on what the schema cannot check. */}}
{{- define "taskflow.worker.pools" -}}
{{- $pools := list -}}
{{- $seen := dict -}}
{{- range $i, $p := .Values.pools -}}
{{- if hasKey $seen $p.name -}}
{{- fail (printf "worker.pools[%d].name: another pool is already named %q (pool names are unique)" $i $p.name) -}}
{{- end -}}
{{- $_ := set $seen $p.name true -}}
{{- $fullname := printf "%s-%s" (include "taskflow.componentName" (list $ "worker")) $p.name -}}
{{- if gt (len $fullname) 63 -}}
{{- fail (printf "worker.pools[%d].name: %q makes the object name %q longer than 63 characters" $i $p.name $fullname) -}}
{{- end -}}
{{- $queues := list -}}
{{- $names := list -}}
{{- range $j, $q := $p.queues -}}
{{- if has $q.name $names -}}
{{- fail (printf "worker.pools[%d].queues[%d].name: pool %q lists queue %q twice" $i $j $p.name $q.name) -}}
{{- end -}}
{{- $names = append $names $q.name -}}
{{- $queues = append $queues (printf "%s:%d" $q.name (int ($q.weight | default 1))) -}}
{{- end -}}
{{- $pool := dict "name" $p.name "fullname" $fullname "queues" (join "," $queues) "queueNames" $names "concurrency" (int $p.concurrency) -}}
{{- range $key := list "replicaCount" "resources" "shutdownGraceSeconds" "extraEnv" "podAnnotations" "priorityClassName" "nodeSelector" "tolerations" "affinity" -}}
{{- $_ := set $pool $key (ternary (index $p $key) (index $.Values $key) (hasKey $p $key)) -}}
{{- end -}}
{{- $autoscaling := deepCopy $.Values.autoscaling -}}
{{- range $key, $value := ($p.autoscaling | default dict) -}}
{{- $_ := set $autoscaling $key $value -}}
{{- end -}}
{{- if gt (int $autoscaling.minReplicas) (int $autoscaling.maxReplicas) -}}
{{- fail (printf "worker.pools[%d].autoscaling: pool %q has minReplicas %v above maxReplicas %v" $i $p.name $autoscaling.minReplicas $autoscaling.maxReplicas) -}}
{{- end -}}
{{- $_ := set $pool "autoscaling" $autoscaling -}}
{{- /* Rounded: 3 × 0.7 is 2.0999999999999996 in floating point. */ -}}
{{- $_ := set $pool "targetValue" (round (mulf $p.concurrency $autoscaling.targetUtilisation) 3) -}}
{{- $pools = append $pools $pool -}}
{{- end -}}
{{- toJson (dict "pools" $pools) -}}
{{- end -}}

{{/* Selector labels of one pool's pods: the worker component's, and the pool. (list $ pool) */}}
{{- define "taskflow.worker.poolSelectorLabels" -}}
{{ include "taskflow.selectorLabels" (list (index . 0) "worker") }}
taskflow/pool: {{ (index . 1).name | quote }}
{{- end -}}

{{/* metadata of one pool's object: named <release>-worker-<pool>, labelled with the pool. (list $ pool) */}}
{{- define "taskflow.worker.poolMetadata" -}}
{{ include "taskflow.metadata" (list (index . 0) "worker" (index . 1).name) }}
  taskflow/pool: {{ (index . 1).name | quote }}
{{- end -}}
