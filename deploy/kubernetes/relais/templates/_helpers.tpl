{{/* The release's name for its objects: "relais" or "<release>-relais". */}}
{{- define "relais.fullname" -}}
{{- if contains "relais" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-relais" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Beside a selector (which names the instance). */}}
{{- define "relais.common" -}}
app.kubernetes.io/part-of: relais
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "relais.labels" -}}
{{ include "relais.common" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector of one service's pods: call with (dict "root" $ "name" "intake"). */}}
{{- define "relais.selector" -}}
app.kubernetes.io/name: relais-{{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* A service's settings: the defaults, then its own. */}}
{{- define "relais.service" -}}
{{- $own := index .root.Values.services .name | default dict -}}
{{- toYaml (mustMergeOverwrite (deepCopy .root.Values.defaults) $own) -}}
{{- end -}}

{{- define "relais.topology" -}}
{{- .Files.Get "topology.yaml" -}}
{{- end -}}

{{/* The Strimzi listener's port: 9093 with TLS, 9092 without. */}}
{{- define "relais.kafkaPort" -}}
{{- ternary 9093 9092 (eq .Values.kafka.mode "strimzi" | and .Values.kafka.tls) -}}
{{- end -}}

{{/* RELAIS_KAFKA_SECURITY_PROTOCOL: with Strimzi, from kafka.tls and kafka.authentication. */}}
{{- define "relais.kafkaProtocol" -}}
{{- if eq .Values.kafka.mode "strimzi" -}}
{{- $sasl := ne .Values.kafka.authentication "none" -}}
{{- if .Values.kafka.tls -}}{{ ternary "SASL_SSL" "SSL" $sasl }}{{- else -}}{{ ternary "SASL_PLAINTEXT" "PLAINTEXT" $sasl }}{{- end -}}
{{- else -}}
{{- .Values.kafka.external.securityProtocol | default "PLAINTEXT" -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the brokers' CA certificate (key ca.crt), if any. */}}
{{- define "relais.kafkaCaSecret" -}}
{{- if eq .Values.kafka.mode "strimzi" -}}
{{- if .Values.kafka.tls }}{{ printf "%s-cluster-ca-cert" .Values.kafka.strimzi.clusterName }}{{ end -}}
{{- else -}}
{{- .Values.kafka.external.caSecret | default "" -}}
{{- end -}}
{{- end -}}

{{- define "relais.kafkaBootstrap" -}}
{{- if eq .Values.kafka.mode "strimzi" -}}
{{- printf "%s-kafka-bootstrap:%s" .Values.kafka.strimzi.clusterName (include "relais.kafkaPort" .) -}}
{{- else -}}
{{- required "kafka.external.bootstrapServers is required with kafka.mode=external" .Values.kafka.external.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key of the database URL: CloudNativePG's application Secret, or yours. */}}
{{- define "relais.databaseUrl" -}}
- name: RELAIS_DATABASE_URL
  valueFrom:
    secretKeyRef:
{{- if eq .Values.postgresql.mode "cloudnativepg" }}
      name: {{ .Values.postgresql.cloudnativepg.clusterName }}-app
{{- else }}
      name: {{ required "postgresql.external.existingSecret is required with postgresql.mode=external" .Values.postgresql.external.existingSecret }}
{{- end }}
      key: uri
{{- end -}}

{{/* NetworkPolicy egress rules to PostgreSQL. */}}
{{- define "relais.postgresEgress" -}}
{{- if eq .Values.postgresql.mode "cloudnativepg" }}
- to:
    - podSelector:
        matchLabels:
          cnpg.io/cluster: {{ .Values.postgresql.cloudnativepg.clusterName }}
  ports:
    - {port: 5432, protocol: TCP}
{{- else }}
- to: {{ required "postgresql.external.egress: the database's addresses (NetworkPolicy peers)" .Values.postgresql.external.egress | toYaml | nindent 4 }}
  ports:
    - {port: {{ .Values.postgresql.external.port }}, protocol: TCP}
{{- end }}
{{- end -}}

{{- define "relais.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.dns.namespace }}
      podSelector:
        matchLabels: {{ toYaml .Values.dns.podLabels | nindent 10 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}
