{{/*
Shared names, labels and image references for the loadgate chart.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "loadgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else "<release>-<name>", else the release
name alone when it already contains the chart name. Truncated to 63 characters (DNS label).
*/}}
{{- define "loadgate.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "loadgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "loadgate.labels" -}}
helm.sh/chart: {{ include "loadgate.chart" . }}
{{ include "loadgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: loadgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator pod; never change them (Deployment selectors are immutable). */}}
{{- define "loadgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loadgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Name of the ServiceAccount the operator runs as. */}}
{{- define "loadgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "loadgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image references. Every tag defaults to the chart's appVersion, so one chart version pins the
operator, model-server and loadrunner images together.
*/}}
{{- define "loadgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "loadgate.modelServerImage" -}}
{{- printf "%s:%s" .Values.modelServer.image.repository (.Values.modelServer.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "loadgate.loadrunnerImage" -}}
{{- printf "%s:%s" .Values.loadrunner.image.repository (.Values.loadrunner.image.tag | default .Chart.AppVersion) }}
{{- end }}
