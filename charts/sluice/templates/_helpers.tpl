{{/* Names and labels. Every object's name starts with the full name: fullnameOverride, else <release>-sluice (or the
release name alone when it holds "sluice"), at most 40 characters. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}{{ .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* A pool's worker Deployment, and its ScaledObject or HPA and PDB: <fullname>-worker-<pool>. KEDA names the HPA
of a ScaledObject keda-hpa-<that name> (at most 63 characters): validate.yaml bounds the pool name with it. */}}
{{- define "sluice.workerName" -}}
{{- include "sluice.fullname" .root }}-worker-{{ .pool.name }}
{{- end -}}

{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sluice.selector" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* KubernetesExecutor task pods: no app.kubernetes.io/instance (nor any other label Argo CD tracks resources by).
They have no owner, so Argo CD would take a pod with the release's tracking label for a resource of its application
that git does not hold, and prune it mid-run; sluice.io/release selects them instead. */}}
{{- define "sluice.kubernetesTaskLabels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/component: kubernetes-task
sluice.io/release: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.image" -}}
{{ .Values.images.airflow.repository }}:{{ .Values.images.airflow.tag }}
{{- end -}}

{{- define "sluice.secretName" -}}{{ .Values.secrets.existingSecretName | default (printf "%s-airflow" (include "sluice.fullname" .)) }}{{- end -}}
{{- define "sluice.metadataSecretName" -}}{{ .Values.data.metadataSecretName | default (printf "%s-metadata" (include "sluice.fullname" .)) }}{{- end -}}
{{- define "sluice.brokerSecretName" -}}{{ .Values.data.brokerUrlSecretName | default (printf "%s-broker" (include "sluice.fullname" .)) }}{{- end -}}
{{- define "sluice.adminSecretName" -}}{{ .Values.createUserJob.passwordSecretName | default (printf "%s-admin" (include "sluice.fullname" .)) }}{{- end -}}
{{- define "sluice.remoteLogFolder" -}}{{ .Values.logs.remote.baseFolder | default (printf "%s/logs" (trimSuffix "/" .Values.artifacts.root)) }}{{- end -}}
{{- define "sluice.apiServerUrl" -}}http://{{ include "sluice.fullname" . }}-api-server.{{ .Release.Namespace }}.svc:{{ .Values.apiServer.service.port }}{{- end -}}

{{/* A Kubernetes quantity (a number, or a string: 250m, 1.5, 2Gi, 1G, ...) as a plain number, for comparing two
quantities: `include "sluice.quantity" "2Gi" | float64`. Suffixes: m (1/1000); k, M, G, T, P, E (powers of 1000);
Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024). Computed as digits x multiplier / 10^decimals, so that equal quantities
in different units (1.1 and 1100m, 1.5Gi and 1536Mi) give the same number. */}}
{{- define "sluice.quantity" -}}
{{- $text := toString . -}}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$" $text -}}
  {{- $number := regexReplaceAll "[a-zA-Z]+$" $text "" -}}
  {{- $suffix := regexReplaceAll "^[0-9.]+" $text "" -}}
  {{- $multipliers := dict "" 1 "m" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
  {{- $divisor := ternary 1000 1 (eq $suffix "m") -}}
  {{- if contains "." $number -}}
    {{- range until (len (last (splitList "." $number))) }}{{ $divisor = mul $divisor 10 }}{{ end -}}
  {{- end -}}
  {{- divf (mulf (float64 (replace "." "" $number)) (get $multipliers $suffix)) $divisor -}}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) (eq (typeOf .) "json.Number") -}}
  {{- /* A YAML number: float64 (Helm 4), json.Number (Helm 3.18.0), whatever its notation. */ -}}
  {{- float64 . -}}
{{- else -}}
  {{- fail (printf "%q is not a Kubernetes quantity (e.g. 500m, 2, 1.5Gi)" $text) -}}
{{- end -}}
{{- end -}}

{{/* Security contexts: non-root, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp. */}}
{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 50000 }}
runAsGroup: 0
fsGroup: 0
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sluice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly | default false }}
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Env shared by every Airflow container: one executor list, one platform file, one set of secrets. */}}
{{- define "sluice.airflowEnv" -}}
- name: AIRFLOW__CORE__EXECUTOR
  value: {{ .Values.executor | quote }}
- name: AIRFLOW__CORE__LOAD_EXAMPLES
  value: "False"
# FAB users and roles (Airflow's production auth manager; SimpleAuthManager is for development only).
- name: AIRFLOW__CORE__AUTH_MANAGER
  value: airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
# A task instance records the pod's IP as its hostname: the api-server reaches a running task's live log
# there (a Deployment's pod name resolves nowhere).
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: AIRFLOW__CORE__HOSTNAME_CALLABLE
  value: sluice.hostname.pod_ip
{{- if .Values.logs.remote.enabled }}
# Finished tasks' logs go to the artifact store (Airflow's remote logging): they outlive a scaled-in worker.
- name: AIRFLOW__LOGGING__REMOTE_LOGGING
  value: "True"
- name: AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER
  value: {{ include "sluice.remoteLogFolder" . | quote }}
- name: AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID
  value: {{ .Values.logs.remote.connId | quote }}
- name: AIRFLOW__LOGGING__DELETE_LOCAL_LOGS
  value: "True"
{{- end }}
- name: AIRFLOW__CORE__DAGS_FOLDER
  value: {{ if .Values.dags.gitSync.enabled }}{{ printf "/opt/airflow/dags/repo/%s" .Values.dags.gitSync.subPath | quote }}{{ else }}"/opt/airflow/dags"{{ end }}
- name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL
  value: "{{ include "sluice.apiServerUrl" . }}/execution/"
- name: AIRFLOW__CORE__FERNET_KEY
  valueFrom: {secretKeyRef: {name: {{ include "sluice.secretName" . }}, key: fernet-key}}
- name: AIRFLOW__API__SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ include "sluice.secretName" . }}, key: api-secret-key}}
- name: AIRFLOW__API_AUTH__JWT_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "sluice.secretName" . }}, key: jwt-secret}}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  valueFrom: {secretKeyRef: {name: {{ include "sluice.metadataSecretName" . }}, key: connection}}
- name: SLUICE_DB_CONN
  valueFrom: {secretKeyRef: {name: {{ include "sluice.metadataSecretName" . }}, key: connection}}
- name: AIRFLOW__CELERY__RESULT_BACKEND
  value: "db+$(SLUICE_DB_CONN)"
- name: AIRFLOW__CELERY__BROKER_URL
  valueFrom: {secretKeyRef: {name: {{ include "sluice.brokerSecretName" . }}, key: connection}}
- name: AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS
  value: sluice.worker.celery_config.CELERY_CONFIG
- name: AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT
  value: {{ .Values.celery.visibilityTimeout | quote }}
- name: AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT
  value: {{ .Values.recovery.taskInstanceHeartbeatTimeout | quote }}
- name: AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT
  value: {{ .Values.recovery.taskQueuedTimeout | quote }}
- name: AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD
  value: {{ .Values.recovery.schedulerHealthCheckThreshold | quote }}
- name: AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL
  value: {{ .Values.tuning.minHeartbeatInterval | quote }}
- name: AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY
  value: {{ .Values.tuning.maxTisPerQuery | quote }}
- name: SLUICE_WORKER_PRELOAD
  {{- /* Steps as pods: the provider's pod machinery (~2,000 modules) is loaded once per worker, not per task. */}}
  {{- $preload := .Values.tuning.workerPreload }}
  {{- if and $preload (eq .Values.launcher.type "kubernetes") }}
  {{- $preload = concat $preload (list "sluice.launchers.kubernetes" "airflow.providers.cncf.kubernetes.operators.pod") | uniq }}
  {{- end }}
  value: {{ join "," $preload | quote }}
- name: SLUICE_WORKER_DAG_CACHE
  value: {{ .Values.tuning.workerDagCache | quote }}
- name: SLUICE_WORKER_EXIT_WAKEUP
  value: {{ .Values.tuning.workerExitWakeup | quote }}
- name: SLUICE_WORKER_START_HEARTBEAT
  value: {{ .Values.tuning.workerStartHeartbeat | quote }}
- name: AIRFLOW__CELERY__TASK_TRACK_STARTED
  value: {{ .Values.tuning.taskTrackStarted | quote }}
- name: AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE
  value: {{ .Release.Namespace | quote }}
# Both read from the platform ConfigMap mounted as a directory, which the kubelet keeps current: the scheduler reads
# the pod template at each KubernetesExecutor task launch, the sluice package the platform file whenever it changed.
- name: AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE
  value: /opt/sluice/platform/pod_template.yaml
- name: SLUICE_PLATFORM_FILE
  value: /opt/sluice/platform/platform.yaml
- name: SLUICE_DEMO_DATA
  # The example pipeline's sources, baked into the ml-steps image at this path.
  value: /opt/sluice/demo-data
# Log servers: workers and the triggerer serve on these ports, the api-server reads from them (its own
# config names the port), and the NetworkPolicies admit the api-server to them.
- name: AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT
  value: {{ .Values.celery.workerLogServerPort | quote }}
- name: AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT
  value: {{ .Values.triggerer.logServerPort | quote }}
{{- if .Values.metrics.enabled }}
- name: AIRFLOW__METRICS__STATSD_ON
  value: "True"
- name: AIRFLOW__METRICS__STATSD_HOST
  value: {{ include "sluice.fullname" . }}-statsd
- name: AIRFLOW__METRICS__STATSD_PORT
  value: "9125"
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The platform ConfigMap as a directory, not by subPath: the kubelet updates a directory mount in running pods (a
subPath mount never changes), so a new step image, profile or pool reaches them without a restart. Only
airflow_local_settings.py, imported once per process, is mounted by subPath where Airflow looks for it; its
checksum restarts the components (sluice.restartChecksums). */}}
{{- define "sluice.airflowVolumeMounts" -}}
- name: platform
  mountPath: /opt/sluice/platform
  readOnly: true
- name: platform
  mountPath: /opt/airflow/config/airflow_local_settings.py
  subPath: airflow_local_settings.py
  readOnly: true
- name: logs
  mountPath: /opt/airflow/logs
- name: tmp
  mountPath: /tmp
{{- if .Values.dags.gitSync.enabled }}
- name: dags
  mountPath: /opt/airflow/dags
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sluice.airflowVolumes" -}}
- name: platform
  configMap:
    name: {{ include "sluice.fullname" . }}-platform
- name: logs
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if .Values.dags.gitSync.enabled }}
- name: dags
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* git-sync sidecar (GitOps DAG delivery), added to every component that parses or runs DAGs. */}}
{{- define "sluice.gitSync" -}}
{{- if .Values.dags.gitSync.enabled }}
- name: git-sync
  image: {{ .Values.images.gitSync.repository }}:{{ .Values.images.gitSync.tag }}
  imagePullPolicy: {{ .Values.images.gitSync.pullPolicy }}
  securityContext:
    {{- include "sluice.containerSecurityContext" (dict "readOnly" true) | nindent 4 }}
  env:
    - {name: GITSYNC_REPO, value: {{ .Values.dags.gitSync.repo | quote }}}
    - {name: GITSYNC_REF, value: {{ .Values.dags.gitSync.branch | quote }}}
    - {name: GITSYNC_ROOT, value: /git}
    - {name: GITSYNC_LINK, value: repo}
    - {name: GITSYNC_PERIOD, value: {{ .Values.dags.gitSync.period | quote }}}
  {{- with .Values.dags.gitSync.credentialsSecretName }}
  envFrom:
    - secretRef: {name: {{ . }}}
  {{- end }}
  resources:
    {{- toYaml .Values.dags.gitSync.resources | nindent 4 }}
  volumeMounts:
    - {name: dags, mountPath: /git}
{{- end }}
{{- end -}}

{{/* airflow_local_settings.py (in the platform ConfigMap): enables Sluice's cluster policy, i.e. kubernetes-queue
routing and the unserved-queue refusal at DAG import. */}}
{{- define "sluice.localSettings" -}}
from sluice.policy import task_policy  # noqa: F401
{{- end -}}

{{/* What a running Airflow component reads of the platform ConfigMap only when it starts, so that a change must restart
it: airflow_local_settings.py, imported once per process. Nothing else: platform.yaml (pools, profiles, step images,
launcher, artifact store) is re-read by the sluice package whenever its file changed, and pod_template.yaml by the
scheduler at each KubernetesExecutor task launch, both from the directory mount the kubelet keeps current (within its
sync period, about a minute). A step image tag bump therefore restarts nothing and drains no worker; what else a pod
needs restarting for is in its own spec (image, args, env, resources). */}}
{{- define "sluice.restartChecksums" -}}
checksum/airflow-local-settings: {{ include "sluice.localSettings" . | sha256sum }}
{{- end -}}

{{/* Wait for the migration Job's work before starting (Airflow's own check, idempotent). */}}
{{- define "sluice.waitForMigrations" -}}
- name: wait-for-migrations
  image: {{ include "sluice.image" . }}
  imagePullPolicy: {{ .Values.images.airflow.pullPolicy }}
  args: ["airflow", "db", "check-migrations", "--migration-wait-timeout", "600"]
  securityContext:
    {{- include "sluice.containerSecurityContext" dict | nindent 4 }}
  resources:
    {{- toYaml .Values.migrations.resources | nindent 4 }}
  env:
    {{- include "sluice.airflowEnv" . | nindent 4 }}
  {{- include "sluice.airflowEnvFrom" . | nindent 2 }}
  volumeMounts:
    {{- include "sluice.airflowVolumeMounts" . | nindent 4 }}
{{- end -}}

{{/* The per-pool scaling query: one SQL text shared with sluice.scaling (files/pool-load.sql). */}}
{{- define "sluice.poolLoadQuery" -}}
{{- $queues := list -}}
{{- range .pool.queues }}{{ $queues = append $queues (printf "'%s'" .) }}{{ end -}}
{{- .root.Files.Get "files/pool-load.sql" | replace "{queues}" (join ", " $queues) | replace "{concurrency}" (toString (int .pool.concurrency)) | trim -}}
{{- end -}}

{{/* One Airflow component Deployment: api-server, scheduler, dag-processor, triggerer. */}}
{{- define "sluice.componentDeployment" -}}
{{- $root := .root -}}
{{- $values := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "sluice.fullname" $root }}-{{ .component }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  replicas: {{ $values.replicas }}
  selector:
    matchLabels:
      {{- include "sluice.selector" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "sluice.selector" (dict "root" $root "component" .component) | nindent 8 }}
      annotations:
        {{- include "sluice.restartChecksums" $root | nindent 8 }}
    spec:
      serviceAccountName: {{ include "sluice.fullname" $root }}-{{ .serviceAccount | default .component }}
      securityContext:
        {{- include "sluice.podSecurityContext" dict | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      initContainers:
        {{- include "sluice.waitForMigrations" $root | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "sluice.image" $root }}
          imagePullPolicy: {{ $root.Values.images.airflow.pullPolicy }}
          args: {{ toJson .args }}
          securityContext:
            {{- include "sluice.containerSecurityContext" dict | nindent 12 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          env:
            {{- include "sluice.airflowEnv" $root | nindent 12 }}
            {{- if eq .component "scheduler" }}
            {{- /* Only the scheduler reads it (its executors' slots): a pool's size restarts no other component. */}}
            - name: AIRFLOW__CORE__PARALLELISM
              {{- /* Every pool slot (and the KubernetesExecutor allowance), so no task waits `scheduled` unseen by KEDA. */}}
              value: {{ (include "sluice.parallelism" $root | fromJson).value | int | quote }}
            {{- end }}
          {{- include "sluice.airflowEnvFrom" $root | nindent 10 }}
          {{- with .ports }}
          ports:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .probes }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
          volumeMounts:
            {{- include "sluice.airflowVolumeMounts" $root | nindent 12 }}
        {{- if .dags }}
        {{- include "sluice.gitSync" $root | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "sluice.airflowVolumes" $root | nindent 8 }}
{{- end -}}

{{/* JSON of `top` over `base`: top's value wins (0, false and null too), mappings merge key by key, anything else
(lists included) is replaced. sluice.platform.merge_pool_defaults is the package's copy. */}}
{{- define "sluice.deepMerge" -}}
{{- $out := deepCopy (.base | default dict) -}}
{{- range $key, $value := .top -}}
  {{- $under := get $out $key -}}
  {{- if and (kindIs "map" $value) (kindIs "map" $under) -}}
    {{- $_ := set $out $key (include "sluice.deepMerge" (dict "base" $under "top" $value) | fromJson) -}}
  {{- else -}}
    {{- $_ := set $out $key $value -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One pool merged over poolDefaults, as JSON: the only place a pool's defaults are applied. Every template that
reads a pool's field reads it from here: `$p := include "sluice.pool" (dict "root" $ "pool" $pool) | fromJson`.
Numbers come back as float64: print them through `int`. */}}
{{- define "sluice.pool" -}}
{{- include "sluice.deepMerge" (dict "base" .root.Values.poolDefaults "top" .pool) -}}
{{- end -}}

{{/* "true" (else empty) when a pool is scaled by hand: autoscaling on, minReplicas 0, no KEDA. An HPA cannot scale to
zero, so such a pool gets none: it starts at 0 workers, and its queued tasks wait for someone to scale it (NOTES.txt). */}}
{{- define "sluice.poolScaledByHand" -}}
{{- $as := (include "sluice.pool" (dict "root" .root "pool" .pool) | fromJson).autoscaling -}}
{{- if and $as.enabled (not .root.Values.keda.enabled) (eq (int $as.minReplicas) 0) }}true{{ end -}}
{{- end -}}

{{/* [core] parallelism per scheduler (Airflow caps queued+running task instances per scheduler, over all its
executors): every slot the pools can offer (per pool: most workers x concurrency; a pool without autoscaling
counts its fixed replicas) shared by the schedulers, rounded up, plus kubernetesExecutor.parallelism when the
KubernetesExecutor is on. A lower cap keeps tasks `scheduled`, where the pools' KEDA query cannot see them.
JSON: poolSlots, schedulers, kubernetes, derived, explicit (scheduler.parallelism), value (explicit when set, else
derived). Numbers go through `int`: Helm 3.18.0 hands values' numbers to templates as json.Number strings. */}}
{{- define "sluice.parallelism" -}}
{{- $slots := 0 -}}
{{- range $raw := .Values.pools -}}
  {{- $pool := include "sluice.pool" (dict "root" $ "pool" $raw) | fromJson -}}
  {{- $as := $pool.autoscaling -}}
  {{- $workers := ternary $as.maxReplicas $as.minReplicas $as.enabled -}}
  {{- $slots = add $slots (mul (int $workers) (int $pool.concurrency)) -}}
{{- end -}}
{{- $schedulers := max 1 (int .Values.scheduler.replicas) -}}
{{- $kubernetes := 0 -}}
{{- if has "KubernetesExecutor" (splitList "," .Values.executor) }}{{ $kubernetes = int .Values.kubernetesExecutor.parallelism }}{{ end -}}
{{- $derived := add (div (sub (add $slots $schedulers) 1) $schedulers) $kubernetes -}}
{{- $explicit := int (.Values.scheduler.parallelism | default 0) -}}
{{- toJson (dict "poolSlots" $slots "schedulers" $schedulers "kubernetes" $kubernetes "derived" $derived "explicit" $explicit "value" (ternary $explicit $derived (gt $explicit 0))) -}}
{{- end -}}

{{/* The artifact store's credentials (e.g. AWS_* / AWS_ENDPOINT_URL for MinIO): the operator reads step
results from the store, so every Airflow container gets them, not only the step pods. */}}
{{- define "sluice.airflowEnvFrom" -}}
{{- with .Values.artifacts.secretName }}
envFrom:
  - secretRef: {name: {{ . }}}
{{- end }}
{{- end -}}
