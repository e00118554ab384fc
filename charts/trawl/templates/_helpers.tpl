{{/* The release's name, used as the prefix of every object. */}}
{{- define "trawl.fullname" -}}
{{- if contains "trawl" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-trawl" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trawl.labels" -}}
app.kubernetes.io/name: trawl
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "trawl.selector" -}}
app.kubernetes.io/name: trawl
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* image: registry/trawl-<component>:<tag> */}}
{{- define "trawl.image" -}}
{{- printf "%s/trawl-%s:%s" .root.Values.image.registry .component (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* The Secret (key `url`) with the PostgreSQL URL. */}}
{{- define "trawl.databaseSecret" -}}
{{- default (printf "%s-database" (include "trawl.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{/* The Secret (key `url`) with the RabbitMQ URL. */}}
{{- define "trawl.brokerSecret" -}}
{{- default (printf "%s-broker" (include "trawl.fullname" .)) .Values.broker.existingSecret -}}
{{- end -}}

{{/* Pod Security "restricted": everything but the sniffers runs like this. */}}
{{- define "trawl.restrictedPod" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "trawl.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* A password kept across upgrades: the existing Secret's, or a new random one. */}}
{{- define "trawl.password" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (index $existing.data "password") -}}
{{- index $existing.data "password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
