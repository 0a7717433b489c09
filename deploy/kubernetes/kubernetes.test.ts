import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  PrometheusRule,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { AlertmanagerConfig as AlertmanagerConfigV1alpha1 } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1alpha1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { CronJob } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { RULE_FILES } from '../../prometheus/rule-conventions.js';
import { loadConfig } from '../../service/config/config.js';
import { parseFlagConfig } from '../../service/flags/flag-config.js';
import { presentOrSkip } from '../../service/test-support/availability.js';
import { generatedFiles, overlayFiles } from './generate.js';

/* No cluster on these machines: the package is rendered with kubectl's kustomize and every object validated
 * against the Kubernetes and Prometheus Operator schemas (kubernetes-models), and the OpenFeature Operator's
 * resources against its published CRD reference. */
const hasKubectl = presentOrSkip(
  spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0
    ? null
    : 'kubectl not found',
);
type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
} & Record<
  string,
  // biome-ignore lint/suspicious/noExplicitAny: rendered YAML, checked by the models
  any
>;
const render = (dir: string): K8sObject[] => {
  const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return parseAllDocuments(run.stdout).map((d) => d.toJSON() as K8sObject);
};
// biome-ignore lint/suspicious/noExplicitAny: each model's constructor takes its own shape
const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'batch/v1/CronJob': CronJob,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
  'monitoring.coreos.com/v1alpha1/AlertmanagerConfig': AlertmanagerConfigV1alpha1,
};

/*
 * The OpenFeature Operator's core.openfeature.dev/v1beta1 resources as its published CRD reference describes
 * them (no package carries their models): required fields, types and enums, unknown fields refused.
 */
const metadata = z.object({ name: z.string().min(1), namespace: z.string().optional() }).passthrough();
const OPEN_FEATURE = {
  FeatureFlag: z
    .object({
      apiVersion: z.literal('core.openfeature.dev/v1beta1'),
      kind: z.literal('FeatureFlag'),
      metadata,
      spec: z
        .object({
          flagSpec: z
            .object({
              flags: z.record(
                z.string(),
                z
                  .object({
                    state: z.enum(['ENABLED', 'DISABLED']),
                    variants: z.record(z.string(), z.unknown()),
                    defaultVariant: z.string(),
                    targeting: z.record(z.string(), z.unknown()).optional(),
                  })
                  .strict(),
              ),
              $evaluators: z.record(z.string(), z.unknown()).optional(),
            })
            .strict(),
        })
        .strict(),
    })
    .strict(),
  FeatureFlagSource: z
    .object({
      apiVersion: z.literal('core.openfeature.dev/v1beta1'),
      kind: z.literal('FeatureFlagSource'),
      metadata,
      spec: z
        .object({
          sources: z
            .array(
              z
                .object({
                  source: z.string().min(1),
                  provider: z.enum(['kubernetes', 'filepath', 'http', 'grpc', 'flagd-proxy']),
                })
                .strict(),
            )
            .min(1),
          port: z.number().int().min(1).max(65_535).optional(),
        })
        .strict(),
    })
    .strict(),
};

describe('deploy/kubernetes', () => {
  it('holds the generated objects exactly as npm run k8s:generate writes them now', () => {
    for (const [name, text] of Object.entries(generatedFiles()))
      expect(readFileSync(join('deploy/kubernetes/base/generated', name), 'utf8'), name).toBe(text);
    for (const [path, text] of Object.entries(overlayFiles()))
      expect(readFileSync(path, 'utf8'), path).toBe(text);
  });

  describe.skipIf(!hasKubectl)('rendered (kubectl kustomize)', () => {
    const objects = hasKubectl ? render('deploy/kubernetes') : [];
    const one = (kind: string) => objects.find((o) => o.kind === kind) as K8sObject;
    const named = (kind: string, name: string) =>
      objects.find((o) => o.kind === kind && o.metadata.name === name) as K8sObject;
    type Container = {
      name: string;
      image: string;
      command?: string[];
      env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: SecretRef } }[];
      volumeMounts?: { name: string; mountPath: string }[];
    };
    type SecretRef = { name: string; key: string; optional?: boolean };
    type Pod = {
      containers: Container[];
      volumes?: {
        name: string;
        secret?: { secretName: string; items: { key: string; path: string }[] };
        configMap?: { name: string };
        persistentVolumeClaim?: { claimName: string };
      }[];
    } & Record<string, unknown>;
    /** Every pod template of the package, by the object that holds it. */
    const pods = (): [string, Pod][] =>
      objects.flatMap((o): [string, Pod][] =>
        o.kind === 'Deployment'
          ? [[o.metadata.name, o.spec.template.spec]]
          : o.kind === 'CronJob'
            ? [[o.metadata.name, o.spec.jobTemplate.spec.template.spec]]
            : [],
      );

    it('validates every object against its schema, in one namespace', () => {
      const openFeature = objects.filter((o) => o.apiVersion === 'core.openfeature.dev/v1beta1');
      for (const o of objects.filter((x) => !openFeature.includes(x))) {
        const Model = MODELS[`${o.apiVersion}/${o.kind}`];
        expect(Model, `${o.apiVersion} ${o.kind}`).toBeDefined();
        expect(
          () => new (Model as NonNullable<typeof Model>)(o).validate(),
          `${o.kind} ${o.metadata.name}`,
        ).not.toThrow();
        if (o.kind !== 'Namespace') expect(o.metadata.namespace, o.kind).toBe('delay-prediction');
      }
      expect(openFeature.map((o) => o.kind).sort()).toEqual(['FeatureFlag', 'FeatureFlagSource']);
      for (const o of openFeature) {
        const checked = OPEN_FEATURE[o.kind as keyof typeof OPEN_FEATURE].safeParse(o);
        expect(checked.success, `${o.kind}: ${checked.error?.message}`).toBe(true);
        expect(o.metadata.namespace, o.kind).toBe('delay-prediction');
      }
      expect(() => render('deploy/kubernetes/overlays/example')).not.toThrow();
    });

    it('runs two or more replicas over nodes, probed, bounded, non-root, read-only, draining before the kill', () => {
      const deployment = one('Deployment');
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0];
      expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
      expect(one('HorizontalPodAutoscaler').spec.minReplicas).toBeGreaterThanOrEqual(2);
      expect(one('PodDisruptionBudget').spec.minAvailable).toBe(1);
      expect(pod.topologySpreadConstraints[0].topologyKey).toBe('kubernetes.io/hostname');
      expect(container.livenessProbe.httpGet.path).toBe('/healthz');
      expect(container.readinessProbe.httpGet.path).toBe('/readyz');
      const shutdownMs = Number(
        container.env.find((e: { name: string }) => e.name === 'SHUTDOWN_TIMEOUT_MS').value,
      );
      expect(shutdownMs).toBe(loadConfig({}).shutdownTimeoutMs);
      expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(shutdownMs);
      expect(container.resources.requests).toBeDefined();
      expect(container.resources.limits).toBeDefined();
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
      // Every variable the container sets is one the config module reads (or an input of another).
      const env = Object.fromEntries(
        container.env.map((e: { name: string; value?: string }) => [e.name, e.value ?? 'from-secret']),
      );
      for (const name of Object.keys(env).filter((n) => n !== 'POD_NAMESPACE'))
        expect(readFileSync('service/config/config.ts', 'utf8'), name).toContain(`  ${name}:`);
      expect(env).toMatchObject({ FLAGD_HOST: 'localhost', FLAGD_PORT: '8015' });
      for (const secret of [
        'ALERTMANAGER_WEBHOOK_TOKEN_FILE',
        'FEEDBACK_TOKEN_FILE',
        'PREDICTIONS_TOKEN_FILE',
        'REPORTS_TOKEN_FILE',
        'BOOKING_REF_KEY_FILE',
      ])
        expect(env[secret]).toMatch(/^\/run\/secrets\//);
      const ports = one('Service').spec.ports.map((p: { name: string }) => p.name);
      expect(ports.sort()).toEqual(['http', 'metrics']);
      expect(one('ServiceMonitor').spec.endpoints[0].port).toBe('metrics');
    });

    it('reads these keys of the Secret delay-prediction, the tokens and keys as files mounted from their keys', () => {
      const keys = new Map<string, boolean>();
      for (const [owner, pod] of pods()) {
        const mounted = new Map<string, string>();
        for (const volume of pod.volumes ?? []) {
          if (volume.secret?.secretName !== 'delay-prediction') continue;
          const mount = pod.containers[0]?.volumeMounts?.find((m) => m.name === volume.name);
          for (const item of volume.secret.items) {
            mounted.set(`${mount?.mountPath}/${item.path}`, item.key);
            keys.set(item.key, false);
          }
        }
        for (const e of pod.containers.flatMap((c) => c.env ?? [])) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref?.name === 'delay-prediction')
            keys.set(ref.key, (keys.get(ref.key) ?? true) && ref.optional === true);
          // A *_FILE setting names a file of a mounted key, named as the key.
          if (e.name.endsWith('_FILE'))
            expect(mounted.get(e.value as string), `${owner}: ${e.name}`).toBe(e.value?.split('/').pop());
        }
      }
      const required = [...keys].filter(([, optional]) => !optional).map(([key]) => key);
      const optional = [...keys].filter(([, isOptional]) => isOptional).map(([key]) => key);
      // What `kubectl create secret generic delay-prediction` must hold (the docs' command), and may.
      expect(required.sort()).toEqual([
        'booking-ref-key',
        'database-url',
        'feedback-token',
        'predictions-token',
        'redis-url',
        'reports-token',
        'webhook-token',
      ]);
      expect(optional.sort()).toEqual(['openweather-api-key', 'report-webhook-url']);
      // The command docs/operations.md gives creates exactly these keys: none the pods read is left out.
      const docs = readFileSync('docs/operations.md', 'utf8');
      const command = /create secret generic delay-prediction \\\n((?:.*\\\n)*.*)/.exec(docs)?.[1] ?? '';
      const documented = [...command.matchAll(/--from-(?:literal|file)=([a-z0-9-]+)=/g)].map((m) => m[1]);
      expect(documented.sort()).toEqual([...required, ...optional].sort());
    });

    it('exports traces to the OpenTelemetry Collector in observability, and lets them out', () => {
      const env = named('Deployment', 'delay-prediction').spec.template.spec.containers[0].env as {
        name: string;
        value?: string;
      }[];
      const endpoint = env.find((e) => e.name === 'OTEL_EXPORTER_OTLP_ENDPOINT')?.value as string;
      expect(endpoint).toBe('http://otel-collector.observability.svc:4318');
      expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }).otlpEndpoint).toBe(endpoint);
      const policy = named('NetworkPolicy', 'delay-prediction');
      expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      type Rule = {
        to?: { namespaceSelector?: { matchLabels: Record<string, string> } }[];
        ports: { port: number; protocol: string }[];
      };
      const rules = policy.spec.egress as Rule[];
      const allows = (port: number, namespace?: string) =>
        rules.some(
          (r) =>
            r.ports.some((p) => p.port === port && p.protocol === 'TCP') &&
            (r.to === undefined ||
              r.to.some(
                (t) => t.namespaceSelector?.matchLabels['kubernetes.io/metadata.name'] === namespace,
              )),
        );
      const url = new URL(endpoint);
      const namespace = url.hostname.split('.')[1];
      expect(allows(Number(url.port), namespace)).toBe(true);
      expect(allows(Number(url.port), 'elsewhere')).toBe(false);
      // And what it needed before its egress was listed: DNS, Postgres, Redis, the Kubernetes API and OpenWeatherMap.
      for (const port of [53, 5432, 6379, 443, 6443]) expect(allows(port), String(port)).toBe(true);
      expect(rules[0]?.ports).toContainEqual({ port: 53, protocol: 'UDP' });
    });

    it('backs the database up weekly with deploy/backup/backup.sh into a claim, non-root, one run at a time', () => {
      const job = named('CronJob', 'delay-prediction-backup');
      expect(job.spec.schedule).toMatch(/^\d+ \d+ \* \* [0-6]$/);
      expect(job.spec.timeZone).toBe('Etc/UTC');
      expect(job.spec.concurrencyPolicy).toBe('Forbid');
      expect(job.spec.startingDeadlineSeconds).toBeGreaterThan(0);
      const spec = job.spec.jobTemplate.spec;
      expect(spec.activeDeadlineSeconds).toBeGreaterThan(0);
      // A wrong setting (exit 2) is not tried again.
      expect(spec.podFailurePolicy.rules[0]).toEqual({
        action: 'FailJob',
        onExitCodes: { containerName: 'backup', operator: 'In', values: [2] },
      });
      const pod = spec.template.spec as Pod;
      const container = pod.containers[0] as Container;
      expect(container.name).toBe('backup');
      // pg_dump of compose's Postgres.
      const compose = parse(readFileSync('docker-compose.yml', 'utf8'));
      expect(container.image).toBe(compose.services.postgres.image);
      expect(container.command).toEqual(['sh', '/backup/backup.sh']);
      const script = pod.volumes?.find((v) => v.name === 'script')?.configMap?.name as string;
      expect(named('ConfigMap', script).data['backup.sh']).toBe(
        readFileSync('deploy/backup/backup.sh', 'utf8'),
      );
      const claim = pod.volumes?.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim
        ?.claimName as string;
      expect(named('PersistentVolumeClaim', claim).spec.accessModes).toEqual(['ReadWriteOnce']);
      const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
      expect(env.DATABASE_URL).toEqual({ secretKeyRef: { name: 'delay-prediction', key: 'database-url' } });
      expect(container.volumeMounts?.find((m) => m.mountPath === env.BACKUP_DIR)?.name).toBe(
        pod.volumes?.find((v) => v.persistentVolumeClaim)?.name,
      );
      // Dumps go at the age the service purges rows at: its default, which the Deployment leaves as it is.
      const serviceEnv = named('Deployment', 'delay-prediction').spec.template.spec.containers[0]
        .env as Container['env'];
      expect(serviceEnv?.map((e) => e.name)).not.toContain('RETENTION_DAYS');
      expect(env.RETENTION_DAYS).toBe(String(loadConfig({}).database.retentionDays));
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, fsGroup: 999 });
      expect(pod.automountServiceAccountToken).toBe(false);
      expect((container as Container & { securityContext: object }).securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
      });
      const policy = named('NetworkPolicy', 'delay-prediction-backup');
      expect(policy.spec.podSelector.matchLabels['app.kubernetes.io/component']).toBe(
        spec.template.metadata.labels['app.kubernetes.io/component'],
      );
      expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      expect(policy.spec.ingress).toBeUndefined();
      expect(
        policy.spec.egress.flatMap((r: { ports: { port: number }[] }) => r.ports.map((p) => p.port)),
      ).toEqual([53, 53, 5432]);
    });

    it("gives the example overlay's boards uids, titles and links of their own, opening on its namespace", () => {
      type Board = {
        uid: string;
        title: string;
        links: { url: string }[];
        templating: { list: { name: string; current?: { value: string } }[] };
      };
      const boards = (rendered: K8sObject[]) =>
        rendered
          .filter((o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1')
          .flatMap((o) => Object.values(o.data as Record<string, string>).map((t) => JSON.parse(t) as Board));
      const base = boards(objects);
      const overlay = boards(render('deploy/kubernetes/overlays/example'));
      expect(overlay).toHaveLength(base.length);
      const uids = new Set(overlay.map((b) => b.uid));
      expect(uids.size).toBe(overlay.length);
      for (const board of overlay) {
        expect(base.map((b) => b.uid)).not.toContain(board.uid);
        expect(base.map((b) => b.title)).not.toContain(board.title);
        for (const link of board.links)
          expect(uids, `${board.uid}: ${link.url}`).toContain(link.url.slice(3));
        const namespace = board.templating.list.find((v) => v.name === 'namespace');
        expect(namespace?.current?.value, board.uid).toBe('delay-prediction-staging');
      }
    });

    it('lets the service account get and patch its FeatureFlag only', () => {
      const role = one('Role');
      expect(role.rules).toEqual([
        {
          apiGroups: ['core.openfeature.dev'],
          resources: ['featureflags'],
          resourceNames: ['delay-prediction'],
          verbs: ['get', 'patch'],
        },
      ]);
      expect(one('Deployment').spec.template.spec.serviceAccountName).toBe(
        one('ServiceAccount').metadata.name,
      );
    });

    it('carries the rules, the dashboards and the flags of the repository, one source of truth each', () => {
      const groups = RULE_FILES.flatMap((f) => parse(readFileSync(f, 'utf8')).groups);
      expect(one('PrometheusRule').spec.groups).toEqual(groups);
      const dashboards = objects.filter(
        (o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1',
      );
      const files = readdirSync('grafana/dashboards').filter((f) => f.endsWith('.json'));
      expect(dashboards).toHaveLength(files.length);
      for (const file of files) {
        const map = dashboards.find((d) => d.data[file] !== undefined);
        expect(JSON.parse(map?.data[file]), file).toEqual(
          JSON.parse(readFileSync(`grafana/dashboards/${file}`, 'utf8')),
        );
      }
      const home = dashboards.find((d) => d.data['overview.json'] !== undefined);
      expect(JSON.parse(home?.data['overview.json']).uid).toBe('delay-overview');
      const flag = one('FeatureFlag');
      // The FeatureFlag's flags are a flag document flagd and this service accept, the one in Git.
      expect(() => parseFlagConfig(JSON.stringify({ flags: flag.spec.flagSpec.flags }))).not.toThrow();
      expect(flag.spec.flagSpec.flags).toEqual(JSON.parse(readFileSync('flagd/flags.json', 'utf8')).flags);
      const source = one('FeatureFlagSource');
      expect(source.spec.sources).toEqual([{ source: flag.metadata.name, provider: 'kubernetes' }]);
      const annotations = one('Deployment').spec.template.metadata.annotations;
      expect(annotations).toMatchObject({
        'openfeature.dev/enabled': 'true',
        'openfeature.dev/featureflagsource': source.metadata.name,
      });
    });
  });
});
