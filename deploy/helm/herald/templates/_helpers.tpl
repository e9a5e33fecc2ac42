{{/* The name of every object: the release name when it contains "herald", else "<release>-herald". */}}
{{- define "herald.fullname" -}}
{{- if contains "herald" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-herald" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels of deploy/base, plus Helm's own. */}}
{{- define "herald.labels" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/part-of: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The pods' selector: the one deploy/base uses, so a kustomize install can be taken over. */}}
{{- define "herald.selector" -}}
app.kubernetes.io/name: herald
{{- end -}}

{{- define "herald.serviceAccountName" -}}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* herald's config: the values' config, with admin_listen opened when metrics are scraped. */}}
{{- define "herald.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $config "admin_listen" (printf "0.0.0.0:%v" .Values.adminPort) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
