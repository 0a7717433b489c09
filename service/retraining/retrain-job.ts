import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelVersionError, VersionNotRegisteredError } from '../models/model-errors.js';
import {
  checkVersionName,
  type ModelStore,
  type PushOutcome,
  readModelFiles,
} from '../models/model-store.js';
import { nextVersion, RetrainError, type RetrainOptions, retrain } from './retraining.js';

export interface RetrainJobOptions extends Omit<RetrainOptions, 'modelsDir' | 'outDir' | 'version'> {
  store: ModelStore;
  /** MODELS_DIR: the champion's files when the registry does not hold it, and the candidate's without `register`. */
  modelsDir: string;
  /** The challenger's name; by default the next after the champion's that neither the registry nor modelsDir holds. */
  version?: string;
  /** A candidate goes into the registry (its files only pass through the work folder) instead of modelsDir. */
  register: boolean;
  /** Who registers, as the registry records it. */
  by: string;
}

/** A candidate the registry did not take (it did not answer, or refused the artifact): exit 1. */
export class RegistrationError extends Error {}

/**
 * The champion's graph and card: the registry's when it holds the version (the bytes every replica serves, checked
 * against their digest), else MODELS_DIR's (a checkout or an image whose models were not registered yet).
 */
async function championFolder(store: ModelStore, modelsDir: string, champion: string, work: string) {
  try {
    const artifact = await store.get(champion);
    const dir = join(work, 'champion');
    mkdirSync(dir);
    writeFileSync(join(dir, `${champion}.onnx`), artifact.onnx);
    writeFileSync(join(dir, `${champion}.json`), JSON.stringify(artifact.card));
    return { dir, source: `${store.where}, ${artifact.digest}` };
  } catch (err) {
    if (err instanceof ModelVersionError && !(err instanceof VersionNotRegisteredError))
      throw new RetrainError(`the champion cannot be scored: ${err.message}`);
    if (!(err instanceof VersionNotRegisteredError)) throw err;
  }
  if (existsSync(join(modelsDir, `${champion}.json`))) return { dir: modelsDir, source: modelsDir };
  throw new RetrainError(
    `no champion ${champion}: it is neither registered in ${store.where} nor in ${modelsDir}`,
  );
}

/**
 * A retraining run as the CronJob and compose's retrain profile make it: the champion from the registry, a name
 * never registered before, `retrain` (export, train, score overall and per segment), and with `register` the
 * candidate registered. A challenger that misses the bar is not registered: the registry holds versions fit
 * for a canary. Nothing here changes a flag: a registered version serves no booking until a person canaries it.
 */
export async function retrainJob(options: RetrainJobOptions) {
  const { store, modelsDir, champion, register, by, ...rest } = options;
  const registered = new Set((await store.list()).map((v) => v.version));
  const taken = (v: string) => registered.has(v) || existsSync(join(modelsDir, `${v}.json`));
  const version = options.version ?? nextVersion(champion, taken);
  try {
    checkVersionName(version);
  } catch (err) {
    throw new RetrainError((err as Error).message);
  }
  if (registered.has(version))
    throw new RetrainError(
      `${version} is already registered in ${store.where}: a version never changes; choose another --version`,
    );

  const work = mkdtempSync(join(tmpdir(), 'delay-retrain-job-'));
  try {
    const championSource = await championFolder(store, modelsDir, champion, work);
    const outDir = register ? join(work, 'candidate') : modelsDir;
    mkdirSync(outDir, { recursive: true });
    const report = await retrain({ ...rest, champion, modelsDir: championSource.dir, outDir, version });
    let registration: PushOutcome | null = null;
    if (register && report.candidate) {
      try {
        const { card, onnx } = await readModelFiles(outDir, version);
        registration = await store.push({ version, card, onnx, by });
      } catch (err) {
        throw new RegistrationError(
          `${version} is a candidate but was not registered in ${store.where}: ${(err as Error).message}`,
        );
      }
    }
    return {
      version,
      champion_source: championSource.source,
      ...report,
      registration,
      // Registered files lived in the work folder, removed below: the registry holds them.
      files: register ? [] : report.files,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
