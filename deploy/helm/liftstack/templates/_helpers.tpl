{{/* Names and labels. */}}
{{- define "liftstack.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "liftstack.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "liftstack.labels" -}}
{{ include "liftstack.selectorLabels" . }}
app.kubernetes.io/part-of: liftstack
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Every pod of this release (the NetworkPolicies' "release pods"). */}}
{{- define "liftstack.releaseSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "liftstack.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* In-cluster URL of a component: http://<fullname>-<component>:<port> */}}
{{- define "liftstack.url" -}}
http://{{ include "liftstack.fullname" .root }}-{{ .component }}:{{ .port }}
{{- end -}}

{{/*
Settings that carry secrets: they come only from secrets.existingSecret (secretKeyRef),
never from values. Any `env:` entry named like one of these makes the render fail.
*/}}
{{- define "liftstack.secretEnvNames" -}}
mongoUrl: LIFTSTACK_MONGO_URL
serviceToken: LIFTSTACK_SERVICE_TOKEN
masterKeys: LIFTSTACK_MASTER_KEYS
oidcClientSecret: LIFTSTACK_OIDC_CLIENT_SECRET
{{- end -}}

{{- define "liftstack.checkEnv" -}}
{{- range $key, $value := .env }}
{{- if regexMatch "(SECRET|PASSWORD|TOKEN|MASTER_KEY|MONGO_URL|_KEY$|_KEY_FILE$)" $key }}
{{- fail (printf "services.%s.env.%s: secrets are never chart values; put it in the Secret named by secrets.existingSecret" $.name $key) }}
{{- end }}
{{- if hasPrefix "LIFTSTACK_DEMO_SIGNIN" $key }}
{{- fail (printf "services.%s.env.%s: the console's demo sign-in is for the local runner only; the chart keeps it off" $.name $key) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The environment of one service: common settings, where the others answer, its secrets by reference, its own `env`. */}}
{{- define "liftstack.env" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $services := $root.Values.services -}}
- name: LIFTSTACK_HOST
  value: "0.0.0.0"
- name: LIFTSTACK_PORT
  value: {{ $svc.port | quote }}
- name: LIFTSTACK_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required" $root.Values.kafka.bootstrap | quote }}
- name: LIFTSTACK_TOPIC_PREFIX
  value: {{ $root.Values.kafka.topicPrefix | quote }}
- name: LIFTSTACK_MONGO_DB
  value: {{ $root.Values.mongo.database | quote }}
- name: LIFTSTACK_LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
- name: LIFTSTACK_LOG_JSON
  value: "true"
- name: LIFTSTACK_OIDC_ISSUER
  value: {{ required "oidc.issuer is required (the provider every service trusts for user tokens)" $root.Values.oidc.issuer | quote }}
- name: LIFTSTACK_OIDC_JWKS_URL
  value: {{ required "oidc.jwksUrl is required" $root.Values.oidc.jwksUrl | quote }}
- name: LIFTSTACK_OIDC_AUDIENCE
  value: {{ $root.Values.oidc.audience | quote }}
- name: LIFTSTACK_INGEST_PUBLIC_URL
  value: {{ $root.Values.ingestPublicUrl | quote }}
{{- range $name := list "connections" "ingest" "writeback" "templates" "audiences" "experiments" }}
{{- $other := get $services $name }}
{{- if and $other $other.enabled }}
- name: LIFTSTACK_{{ upper $name }}_URL
  value: {{ include "liftstack.url" (dict "root" $root "component" $name "port" $other.port) | quote }}
{{- end }}
{{- end }}
{{- if $root.Values.sandbox.enabled }}
{{- $sandboxUrl := include "liftstack.url" (dict "root" $root "component" "iterable-sandbox" "port" $root.Values.sandbox.port) }}
- name: LIFTSTACK_ITERABLE_BASE_URL
  value: {{ $sandboxUrl | quote }}
- name: LIFTSTACK_SANDBOX_URL
  value: {{ $sandboxUrl | quote }}
{{- end }}
{{- if eq .name "console" }}
- name: LIFTSTACK_CONSOLE_PUBLIC_URL
  value: {{ $root.Values.consolePublicUrl | quote }}
- name: LIFTSTACK_OIDC_CLIENT_ID
  value: {{ $root.Values.oidc.clientId | quote }}
- name: LIFTSTACK_DEMO_SIGNIN
  value: "false"
{{- end }}
{{- if $svc.stateDir }}
- name: LIFTSTACK_AUDIENCE_STATE_DIR
  value: {{ $svc.stateDir | quote }}
{{- end }}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: HOME
  value: /tmp
{{- $secretEnv := include "liftstack.secretEnvNames" . | fromYaml }}
{{- range $key := $svc.secrets }}
{{- if not (hasKey $secretEnv $key) }}
{{- fail (printf "services.%s.secrets: unknown secret %q (one of: %s)" $.name $key (keys $secretEnv | sortAlpha | join ", ")) }}
{{- end }}
- name: {{ get $secretEnv $key }}
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.existingSecret is required: the name of a Secret you created (the chart never holds secret values)" $root.Values.secrets.existingSecret }}
      key: {{ get $root.Values.secrets.keys $key }}
{{- end }}
{{- include "liftstack.checkEnv" (dict "name" .name "env" $svc.env) }}
{{- range $key, $value := $svc.env }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Container probes (see values.yaml, `probes`, for why liveness is not /healthz). */}}
{{- define "liftstack.probes" -}}
{{- $p := .root.Values.probes -}}
readinessProbe:
  httpGet: {path: {{ .readinessPath | default $p.readinessPath }}, port: http}
  {{- toYaml $p.readiness | nindent 2 }}
livenessProbe:
  httpGet: {path: {{ .livenessPath | default $p.livenessPath }}, port: http}
  {{- toYaml $p.liveness | nindent 2 }}
startupProbe:
  httpGet: {path: {{ .livenessPath | default $p.livenessPath }}, port: http}
  {{- toYaml $p.startup | nindent 2 }}
{{- end -}}

{{/* A component's NetworkPolicy egress to DNS, the release's pods, Kafka and MongoDB. */}}
{{- define "liftstack.baseEgress" -}}
{{- $root := . -}}
- to:
    - {{- toYaml $root.Values.networkPolicy.dns | nindent 6 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
- to:
    - podSelector:
        matchLabels:
          {{- include "liftstack.releaseSelector" $root | nindent 10 }}
- to:
    - {{- toYaml $root.Values.kafka.peer | nindent 6 }}
  ports:
    {{- range $root.Values.kafka.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
- to:
    - {{- toYaml $root.Values.mongo.peer | nindent 6 }}
  ports:
    {{- range $root.Values.mongo.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}
