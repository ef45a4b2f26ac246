{{/* Names, labels and the few values several templates derive. */}}

{{- define "twin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "twin.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: <fullname>-<component>. */}}
{{- define "twin.component" -}}
{{- printf "%s-%s" (include "twin.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "twin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "twin.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "twin.labels" -}}
{{ include "twin.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: llm-twin
{{- end -}}

{{/* repository:tag; our own images default to the chart's appVersion. */}}
{{- define "twin.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "twin.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Scheduling of a component's pods from its `placement` values. */}}
{{- define "twin.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A container that runs as its image's non-root user with nothing it does not need. */}}
{{- define "twin.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Every namespace profiles may live in: the release's, watchNamespaces and profileNamespaces. */}}
{{- define "twin.profileNamespaces" -}}
{{- $all := concat (list .Release.Namespace) .Values.watchNamespaces .Values.profileNamespaces | uniq -}}
{{- toJson $all -}}
{{- end -}}

{{- define "twin.settingsName" -}}
{{- if .Values.settings.existingSecret -}}
{{- .Values.settings.existingSecret -}}
{{- else -}}
{{- include "twin.component" (dict "root" . "component" "settings") -}}
{{- end -}}
{{- end -}}

{{- define "twin.settingsConfigMap" -}}
{{- include "twin.component" (dict "root" . "component" "settings") -}}
{{- end -}}

{{- define "twin.operatorServiceAccount" -}}
{{- default (include "twin.component" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{/* Cluster-internal hostnames of the chart's services (profile pods run in other namespaces). */}}
{{- define "twin.host" -}}
{{- printf "%s.%s.svc" (include "twin.component" .) .root.Release.Namespace -}}
{{- end -}}

{{- define "twin.postgresSecret" -}}
{{- default (include "twin.component" (dict "root" . "component" "postgres")) .Values.postgres.existingSecret -}}
{{- end -}}

{{/* The Postgres password: values, else the one already installed, else a new random one (made
once per render: it is remembered in .Values so every template sees the same). */}}
{{- define "twin.postgresPassword" -}}
{{- if not .Values.postgres.password -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "twin.component" (dict "root" . "component" "postgres")) -}}
{{- if and $existing (index ($existing.data | default dict) "password") -}}
{{- $_ := set .Values.postgres "password" (index $existing.data "password" | b64dec) -}}
{{- else -}}
{{- $_ := set .Values.postgres "password" (randAlphaNum 32) -}}
{{- end -}}
{{- end -}}
{{- .Values.postgres.password -}}
{{- end -}}

{{- define "twin.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s:9092" (include "twin.host" (dict "root" . "component" "kafka")) -}}
{{- else -}}
{{- required "kafka.enabled=false needs external.kafka.bootstrapServers" .Values.external.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "twin.mlflowUri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s:%d" (include "twin.host" (dict "root" . "component" "mlflow")) (int .Values.mlflow.port) -}}
{{- else -}}
{{- .Values.external.mlflow.trackingUri -}}
{{- end -}}
{{- end -}}

{{/* Resource quantities as strings (the operator's settings take strings; values may hold numbers). */}}
{{- define "twin.quantities" -}}
{{- $out := dict -}}
{{- range $k, $v := . -}}
{{- $_ := set $out $k (toString $v) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "twin.resourcesJson" -}}
{{- printf "{\"requests\": %s, \"limits\": %s}" (include "twin.quantities" .requests) (include "twin.quantities" .limits) -}}
{{- end -}}

{{/* The crawl NetworkPolicy's database peer, as the operator's settings read it (JSON). */}}
{{- define "twin.databasePeer" -}}
{{- if .Values.postgres.enabled -}}
{{- $labels := fromYaml (include "twin.selectorLabels" (dict "root" . "component" "postgres")) -}}
{{- dict "namespace" .Release.Namespace "pod_labels" $labels "port" 5432 | toJson -}}
{{- else -}}
{{- $peer := .Values.external.database.peer -}}
{{- dict "namespace" (default .Release.Namespace $peer.namespace) "pod_labels" (default dict $peer.podLabels) "port" (default .Values.external.database.port $peer.port) | toJson -}}
{{- end -}}
{{- end -}}

{{/* The operator's rules on profile children (namespaced: a ClusterRole or a Role per namespace). */}}
{{- define "twin.operatorNamespacedRules" -}}
- apiGroups: [llmtwin.dev]
  resources: [twinprofiles]
  verbs: [get, list, watch, patch, update]
- apiGroups: [llmtwin.dev]
  resources: [twinprofiles/status]
  verbs: [get, patch, update]
- apiGroups: [llmtwin.dev]
  resources: [twinprofiles/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [ray.io]
  resources: [rayjobs, rayservices]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [ray.io]
  resources: [rayjobs/status, rayservices/status]
  verbs: [get]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* The change-capture Deployments ("namespace/name") the operator watches for FeaturesReady. */}}
{{- define "twin.featuresDeployments" -}}
{{- $refs := list -}}
{{- range $component := list "features" "connect" -}}
{{- if (index $.Values $component).enabled -}}
{{- $refs = append $refs (printf "%s/%s" $.Release.Namespace (include "twin.component" (dict "root" $ "component" $component))) -}}
{{- end -}}
{{- end -}}
{{- toJson $refs -}}
{{- end -}}
