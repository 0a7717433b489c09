import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { feedback, predictions } from '../../db/schema.js';
import { generateBookings } from '../../models/generator.js';
import { loadConfig } from '../../service/config/config.js';
import { NEUTRAL_WEATHER } from '../../service/domain/weather.js';
import { bookingFeatures, featureVector } from '../../service/features/booking-features.js';
import { createModelStore } from '../../service/models/model-store.js';
import { heuristicEstimate } from '../../service/predictors/heuristic.js';
import { presentOrSkip } from '../../service/test-support/availability.js';
import { freshPostgres, postgresAvailable, predictionRow } from '../../service/test-support/databases.js';
import { buildStages, instructions, type Stage } from '../../service/test-support/dockerfile.js';
import { flagsDocument, tempDir } from '../../service/test-support/harness.js';
import { startKubernetesApiStandIn } from '../../service/test-support/kubernetes-api-stand-in.js';
import { runChild } from '../../service/test-support/run-child.js';

/*
 * No Docker engine runs on the development machines: the trainer image is built here as deploy/trainer/Dockerfile
 * says (service/test-support/dockerfile.ts), except its apt-get line, whose packages this machine has installed at
 * the versions the Dockerfile pins (checked first), and the image's command runs against a real Postgres holding
 * served predictions with their feedback, as the CronJob and compose's retrain profile run it.
 */
const DOCKERFILE = 'deploy/trainer/Dockerfile';
const dockerfile = instructions(readFileSync(DOCKERFILE, 'utf8'));
const aptGet = dockerfile.find((i) => i.keyword === 'RUN' && /\bapt-get install\b/.test(i.args));
/** The Debian packages the image installs, by name: the version pinned. */
const pinned = Object.fromEntries(
  [...(aptGet?.args ?? '').matchAll(/\b(python3-[a-z0-9-]+)=(\S+)/g)].map((m) => [m[1], m[2]]),
);
const installed = (name: string) =>
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's field, not JavaScript's
  spawnSync('dpkg-query', ['-W', '-f=${Version}', name], { encoding: 'utf8' }).stdout.trim();
const hasTrainer = presentOrSkip(
  spawnSync('/usr/bin/python3', ['-c', 'import sklearn, onnx'], { stdio: 'ignore' }).status === 0
    ? null
    : '/usr/bin/python3 with scikit-learn and onnx (apt-get install python3-sklearn python3-onnx)',
);
const hasPostgres = await postgresAvailable();

const yamlDocuments = (file: string) =>
  parseAllDocuments(readFileSync(file, 'utf8')).map(
    (d) =>
      d.toJSON() as {
        kind: string;
        metadata: { name: string };
        // biome-ignore lint/suspicious/noExplicitAny: manifests, checked by kubernetes.test.ts against the schemas
        spec: any;
        // biome-ignore lint/suspicious/noExplicitAny: as above
        rules?: any[];
      },
  );

describe('deploy/trainer/Dockerfile', () => {
  it('runs the Node of .node-version on Debian bookworm, with the bookworm trainer packages CI trains with', () => {
    const node = readFileSync('.node-version', 'utf8').trim();
    expect(dockerfile[0]).toEqual({ keyword: 'ARG', args: `NODE_VERSION=${node}` });
    const froms = dockerfile.filter((i) => i.keyword === 'FROM').map((i) => i.args.split(/\s+/)[0]);
    expect(froms).toHaveLength(2);
    for (const from of froms) expect(from).toMatch(/^node:\$\{NODE_VERSION\}-bookworm-slim$/);
    expect(Object.keys(pinned).sort()).toEqual(['python3-onnx', 'python3-sklearn']);
    expect(aptGet?.args).toContain('--no-install-recommends');
    expect(aptGet?.args).toContain('rm -rf /var/lib/apt/lists/*');
    // .ci/run installs the same packages for the suite: the versions that trained and passed are the image's.
    expect(readFileSync('.ci/run', 'utf8')).toMatch(/python3-sklearn python3-onnx/);
    if (!presentOrSkip(existsSync('/etc/debian_version') ? null : 'Debian (dpkg-query)')) return;
    expect(readFileSync('/etc/os-release', 'utf8')).toMatch(/^VERSION_CODENAME=bookworm$/m);
    for (const [name, version] of Object.entries(pinned)) expect(installed(name), name).toBe(version);
  });

  it('is run by the CronJob and by compose with the same command, the registry written, the flags only read', () => {
    const cmd = JSON.parse(dockerfile.find((i) => i.keyword === 'CMD')?.args ?? '[]') as string[];
    expect(cmd).toEqual(['node', 'service/cli/retrain-cli.js', 'run', '--days', '28', '--register']);

    const compose = parse(readFileSync('docker-compose.yml', 'utf8')).services;
    const job = compose.retrain;
    expect(job.profiles).toEqual(['retrain']);
    expect(job.build).toEqual({ context: '.', dockerfile: DOCKERFILE });
    expect(job.command).toEqual(cmd);
    expect(job.restart).toBe('no');
    expect(job.read_only).toBe(true);
    expect(job.tmpfs).toEqual(['/tmp']);
    // The stack's Postgres and flag file, as the service reads them; the flags mounted read-only.
    expect(job.environment.DATABASE_URL).toBe(compose.service.environment.DATABASE_URL);
    expect(job.environment.DATABASE_PASSWORD_FILE).toBe(compose.service.environment.DATABASE_PASSWORD_FILE);
    expect(job.environment.FLAGS_FILE).toBe(compose.service.environment.FLAGS_FILE);
    expect(job.volumes).toEqual(['./flagd:/app/flagd:ro']);
    expect(job.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    const secret = join(tempDir(), 'postgres_password');
    writeFileSync(secret, 'a password');
    const config = loadConfig({ ...job.environment, DATABASE_PASSWORD_FILE: secret }, {}, { role: 'tool' });
    expect(config.flagStore).toEqual({ kind: 'file', file: '/app/flagd/flags.json' });

    const [cronJob] = yamlDocuments('deploy/kubernetes/base/retraining/cronjob.yaml');
    const spec = cronJob?.spec;
    expect(cronJob?.kind).toBe('CronJob');
    expect(spec.concurrencyPolicy).toBe('Forbid');
    expect(spec.successfulJobsHistoryLimit).toBeGreaterThan(0);
    expect(spec.failedJobsHistoryLimit).toBeGreaterThan(0);
    // Weekly, at a fixed hour of a fixed day, in UTC.
    expect(spec.schedule).toMatch(/^\d+ \d+ \* \* [0-6]$/);
    expect(spec.timeZone).toBe('Etc/UTC');
    const jobSpec = spec.jobTemplate.spec;
    // Too little feedback (3) and a usage error (2) fail the Job at once; a failed run (1) is tried again.
    expect(jobSpec.podFailurePolicy.rules[0]).toEqual({
      action: 'FailJob',
      onExitCodes: { containerName: 'retrain', operator: 'In', values: [2, 3] },
    });
    expect(jobSpec.backoffLimit).toBeGreaterThan(0);
    const pod = jobSpec.template.spec;
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    const [container] = pod.containers;
    expect(container.name).toBe('retrain');
    expect(container.args).toEqual(cmd);
    expect(container.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(container.resources.requests).toBeDefined();
    expect(container.resources.limits).toBeDefined();
    // The work folder is the only writable one: os.tmpdir(), an emptyDir.
    expect(container.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(pod.volumes).toEqual([{ name: 'tmp', emptyDir: { sizeLimit: expect.any(String) } }]);
    const env = Object.fromEntries(
      container.env.map((e: { name: string; value?: string }) => [e.name, e.value ?? 'from-secret']),
    );
    expect(env).toEqual({
      POD_NAMESPACE: 'from-secret',
      FLAGS_FEATUREFLAG: '$(POD_NAMESPACE)/delay-prediction',
      DATABASE_URL: 'from-secret',
    });
    expect(container.env.find((e: { name: string }) => e.name === 'DATABASE_URL').valueFrom).toEqual({
      secretKeyRef: { name: 'delay-prediction', key: 'database-url' },
    });

    // Its account reads the FeatureFlag and changes nothing; its network reaches DNS, Postgres and the API.
    const account = yamlDocuments('deploy/kubernetes/base/retraining/service-account.yaml');
    expect(pod.serviceAccountName).toBe(account.find((d) => d.kind === 'ServiceAccount')?.metadata.name);
    expect(account.find((d) => d.kind === 'Role')?.rules).toEqual([
      {
        apiGroups: ['core.openfeature.dev'],
        resources: ['featureflags'],
        resourceNames: ['delay-prediction'],
        verbs: ['get'],
      },
    ]);
    const [policy] = yamlDocuments('deploy/kubernetes/base/retraining/network-policy.yaml');
    expect(policy?.spec.podSelector.matchLabels).toEqual(jobSpec.template.metadata.labels);
    expect(policy?.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy?.spec.ingress).toBeUndefined();
    const ports = policy?.spec.egress.flatMap((rule: { ports: { port: number }[] }) =>
      rule.ports.map((p) => p.port),
    );
    expect(ports).toEqual(expect.arrayContaining([53, 5432, 443]));

    // The trainer ships with the service: one release, one tag, in the base and in the example overlay.
    for (const file of [
      'deploy/kubernetes/base/kustomization.yaml',
      'deploy/kubernetes/overlays/example/kustomization.yaml',
    ]) {
      const images = parse(readFileSync(file, 'utf8')).images as { name: string; newTag: string }[];
      const tag = (name: string) => images.find((i) => i.name.split('/').at(-1) === name)?.newTag;
      expect(tag('delay-prediction'), file).toBeDefined();
      expect(tag('delay-prediction-trainer'), file).toBe(tag('delay-prediction'));
    }
  });
});

describe.skipIf(!hasTrainer || !presentOrSkip(hasPostgres ? null : 'Postgres at 127.0.0.1:5432'))(
  'the trainer image, built as its Dockerfile says without a Docker engine',
  () => {
    let stages: Stage[] = [];
    let image: Stage;
    let database: Awaited<ReturnType<typeof freshPostgres>>;
    const dir = tempDir('delay-trainer-');
    const flags = join(dir, 'flags.json');
    const work = join(dir, 'tmp');
    const cmd = () => image.cmd ?? [];

    /** A compiled tool of the image (`args` after `node`), run in the image's folder. */
    const node = (env: Record<string, string>, args: string[]) =>
      runChild(
        process.execPath,
        args,
        { TMPDIR: work, ...image.env, DATABASE_URL: database.url, ...env },
        { cwd: image.root },
      );
    /** The image's command (and `extra` options), as the CronJob runs it. */
    const run = (env: Record<string, string>, ...extra: string[]) => node(env, [...cmd().slice(1), ...extra]);
    const registered = async () =>
      (await createModelStore(database.db, 'postgres').list()).map((v) => v.version).sort();
    /** What the runs left in their work folder (the CronJob's emptyDir): the job's own folders are named delay-. */
    const workLeft = () => readdirSync(work).filter((f) => f.startsWith('delay-'));
    const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

    beforeAll(async () => {
      // The apt-get line is the machine's (its packages checked above); everything else is built as written.
      const withoutApt = join(dir, 'Dockerfile');
      writeFileSync(
        withoutApt,
        readFileSync(DOCKERFILE, 'utf8')
          .replace(/\\\n/g, ' ')
          .replace(/^RUN apt-get .*\n/m, ''),
      );
      stages = await buildStages('.', withoutApt);
      image = stages.at(-1) as Stage;
      database = await freshPostgres();
      // A season the committed model never saw (rush hour 2 h later, trips x1.5), served over the last three
      // days by the heuristic (its answer is the served delay and the shadow), each booking with its feedback.
      const season = generateBookings({
        seed: 2026,
        count: 2500,
        season: { rushShiftHours: 2, tripFactor: 1.5 },
      });
      const first = Date.now() - 3 * 86_400_000;
      const step = (2 * 86_400_000) / season.length;
      const rows = season.map((r, i) => {
        const features = bookingFeatures(r.booking, r.weather);
        const heuristic = heuristicEstimate(features);
        return predictionRow(r.booking.booking_id, {
          predictedAt: new Date(first + i * step),
          endpoint: 'batch',
          delayMinutes: heuristic.delay_minutes,
          intervalLow: heuristic.interval.low,
          intervalHigh: heuristic.interval.high,
          shadowHeuristicDelay: heuristic.delay_minutes,
          features: featureVector(features, NEUTRAL_WEATHER),
          weatherSource: 'api',
        });
      });
      for (let i = 0; i < rows.length; i += 500) {
        await database.db.insert(predictions).values(rows.slice(i, i + 500));
        await database.db
          .insert(feedback)
          .values(
            season
              .slice(i, i + 500)
              .map((r) => ({ bookingId: r.booking.booking_id, actualDelayMinutes: r.actual_delay_minutes })),
          );
      }
      writeFileSync(flags, JSON.stringify(flagsDocument({ mlWeight: 10, modelVersion: 'gbt-v2' })));
      rmSync(work, { recursive: true, force: true });
      spawnSync('mkdir', ['-p', work]);
    }, 300_000);
    afterAll(async () => {
      await database?.close();
      for (const stage of stages) rmSync(stage.root, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    });

    it('holds the compiled retraining CLI, the trainer and the committed model, no flags, no TypeScript, as node', () => {
      const files = (root: string, at = root): string[] =>
        readdirSync(at, { withFileTypes: true }).flatMap((e) => {
          if (e.name === 'node_modules' && at === root) return [];
          const path = join(at, e.name);
          return e.isDirectory() ? files(root, path) : [relative(root, path)];
        });
      const held = files(image.root);
      for (const file of [
        'service/cli/retrain-cli.js',
        'service/retraining/retrain-job.js',
        'models/trainer.py',
      ])
        expect(held).toContain(file);
      expect(held).toContain('models/gbt-v2.onnx');
      expect(held.filter((f) => f.startsWith('db/migrations/')).length).toBeGreaterThan(0);
      // The champion comes from the live flag, never from flags baked into the image.
      expect(held.filter((f) => f.startsWith('flagd/'))).toEqual([]);
      expect(held.filter((f) => f.endsWith('.ts') || /\.test\.|test-support/.test(f))).toEqual([]);
      expect(image.user).toBe('node');
      expect(image.env).toEqual({ NODE_ENV: 'production' });
      expect(stages.map((s) => s.installs)).toEqual([['all'], ['production']]);
    });

    it("retrains from stored feedback with the image's command, registers the candidate and changes no flag", async () => {
      const before = sha(flags);
      const result = await run({ FLAGS_FILE: flags });
      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toContain('2500 bookings with feedback: 2000 to train, 500 held out');
      expect(result.stdout).toMatch(/per segment/);
      expect(result.stdout).toMatch(/^gbt-v3 is a candidate: MAE/m);
      expect(result.stdout).toMatch(
        /registered in the model registry: sha256:[0-9a-f]{64}; it serves no booking/,
      );

      const store = createModelStore(database.db, 'postgres');
      const shown = await store.show('gbt-v3');
      expect(shown.registeredBy).toMatch(/^retrain:/);
      expect(shown.card).toMatchObject({
        version: 'gbt-v3',
        training_data: { source: expect.stringMatching(/^production predictions with feedback/) },
        retraining: {
          candidate: true,
          champion: { version: 'gbt-v2' },
          rows: { with_feedback: 2500 },
          segments: { regressions: [] },
        },
      });
      // Registered, never served: the flag file is as it was, nothing is written beside the image's model, and
      // the work folder (the CronJob's emptyDir) is left empty.
      expect(sha(flags)).toBe(before);
      expect(readdirSync(join(image.root, 'models')).filter((f) => f.startsWith('gbt-v3'))).toEqual([]);
      expect(workLeft()).toEqual([]);

      // The registry's own tool lists it, from the same image's compiled JavaScript.
      const list = await node({}, ['service/cli/models-cli.js', 'list']);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain('gbt-v3');
    }, 240_000);

    it('scores the champion the FeatureFlag names from the registry, and registers no challenger that misses the bar', async () => {
      // The CronJob's setting: the champion is read from the FeatureFlag, whose account may get it, not patch it.
      const api = await startKubernetesApiStandIn({
        namespace: 'delay-prediction',
        name: 'delay-prediction',
        flags: flagsDocument({ mlWeight: 10, modelVersion: 'gbt-v3' }).flags,
      });
      api.forbid('patch');
      try {
        const result = await run({
          FLAGS_FEATUREFLAG: 'delay-prediction/delay-prediction',
          KUBERNETES_API_URL: api.url,
          KUBERNETES_TOKEN_FILE: join(dir, 'absent-token'),
        });
        expect(result.code, result.stdout + result.stderr).toBe(0);
        expect(result.stdout).toMatch(
          /champion gbt-v3 from the model registry \(Postgres at DATABASE_URL\), sha256:/,
        );
        // The same rows, the same seed: a model as good as gbt-v3, not 5% better.
        expect(result.stdout).toMatch(
          /^gbt-v4 is not a candidate: MAE [\d.]+ is not at most .*; nothing registered$/m,
        );
        expect(api.requests.map((r) => r.method)).toEqual(['GET']);
      } finally {
        await api.close();
      }
      expect(await registered()).not.toContain('gbt-v4');
      expect(workLeft()).toEqual([]);
    }, 240_000);

    it('writes a candidate to MODELS_DIR without --register, which the registry tool then registers', async () => {
      const models = join(dir, 'models');
      cpSync(join(image.root, 'models'), models, { recursive: true });
      // The name after gbt-v2 that the registry does not hold: gbt-v3 is registered, gbt-v4 is free.
      const written = await node({ FLAGS_FILE: flags, MODELS_DIR: models }, [
        'service/cli/retrain-cli.js',
        ...['run', '--days', '28', '--estimators', '100'],
      ]);
      expect(written.code, written.stdout + written.stderr).toBe(0);
      expect(written.stdout).toMatch(/^gbt-v4 is a candidate: /m);
      expect(written.stdout).toContain('register it: npm run models -- push gbt-v4');
      expect(
        readdirSync(models)
          .filter((f) => f.startsWith('gbt-v4'))
          .sort(),
      ).toEqual(['gbt-v4.json', 'gbt-v4.onnx', 'gbt-v4.parity.json']);
      expect(await registered()).not.toContain('gbt-v4');

      const push = await node({ MODELS_DIR: models }, ['service/cli/models-cli.js', 'push', 'gbt-v4']);
      expect(push.code, push.stderr).toBe(0);
      const shown = await createModelStore(database.db, 'postgres').show('gbt-v4');
      expect(shown.card).toMatchObject({ version: 'gbt-v4', retraining: { candidate: true } });
      expect(workLeft()).toEqual([]);
    }, 240_000);

    it('refuses a version already registered (exit 2) and too little feedback (exit 3), registering nothing', async () => {
      const before = await registered();
      const taken = await run({ FLAGS_FILE: flags }, '--version', 'gbt-v3');
      expect(taken.code).toBe(2);
      expect(taken.stderr).toContain('gbt-v3 is already registered in the model registry');
      // The bookings were served between three days and a day ago: none in the last hour.
      const none = await run({ FLAGS_FILE: flags }, '--days', '0.04');
      expect(none.code).toBe(3);
      expect(none.stderr).toMatch(
        /^0 bookings with feedback between .*; at least 2000 are needed \(widen --days\): nothing trained, nothing registered$/m,
      );
      expect(await registered()).toEqual(before);
    }, 120_000);

    it('fails with exit 1 when the trainer fails, and registers nothing', async () => {
      const before = await registered();
      const trainer = join(image.root, 'models/trainer.py');
      const original = readFileSync(trainer, 'utf8');
      writeFileSync(trainer, 'import sys\nsys.exit("the trainer cannot fit: out of memory")\n');
      try {
        const result = await run({ FLAGS_FILE: flags });
        expect(result.code, result.stdout + result.stderr).toBe(1);
        expect(result.stderr).toMatch(/^the trainer failed:\n.*the trainer cannot fit: out of memory/m);
      } finally {
        writeFileSync(trainer, original);
      }
      expect(await registered()).toEqual(before);
      expect(workLeft()).toEqual([]);
    }, 120_000);
  },
);
