import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { asc, eq, sql } from 'drizzle-orm';
import { modelVersions } from '../../db/schema.js';
import { HEURISTIC_VARIANT } from '../domain/flags.js';
import type { Db } from '../storage/database.js';
import {
  DigestMismatchError,
  InvalidArtifactError,
  VersionConflictError,
  VersionNotRegisteredError,
  VersionRetiredError,
} from './model-errors.js';
import { createModelSession, parseModelCard } from './onnx-model.js';

/*
 * The model registry's storage (docs/adr/0013-model-registry.md): one row per version in `model_versions`, on the
 * service's database (Postgres, or PGlite for one process), so that every replica reads the same versions. A
 * name is bound to its digest the first time it is registered; nothing changes a row afterwards.
 */

/** A version as the service loads it: verified against its digest. */
export interface ModelArtifact {
  version: string;
  digest: string;
  card: Record<string, unknown>;
  onnx: Uint8Array;
}

export interface RegisteredVersion {
  version: string;
  /** null for a retired name, which holds no artifact. */
  digest: string | null;
  retired: boolean;
  note: string | null;
  registeredAt: Date;
  registeredBy: string;
  /** The graph's size in bytes; null for a retired name. */
  onnxBytes: number | null;
  features: number | null;
}

export type PushOutcome = { outcome: 'registered' | 'unchanged'; version: string; digest: string };

/** Versions are flag variants, metric labels and file names: letters, digits, '.', '_', '-'; not the rules' own. */
const VERSION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkVersionName(version: string): void {
  if (!VERSION_NAME.test(version) || version === HEURISTIC_VARIANT) {
    throw new InvalidArtifactError(
      JSON.stringify(version),
      `a version name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, and not "${HEURISTIC_VARIANT}"`,
    );
  }
}

/** JSON with every object's keys sorted, no whitespace: the same card gives the same text wherever it is stored. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * `sha256:` and the hex SHA-256 of the graph's length (8 bytes, big-endian), the graph's bytes and the card's
 * canonical JSON: the length keeps any graph-card split from hashing like another.
 */
export function modelDigest(onnx: Uint8Array, card: unknown): string {
  const length = Buffer.alloc(8);
  length.writeBigUInt64BE(BigInt(onnx.byteLength));
  const hash = createHash('sha256').update(length).update(onnx).update(canonicalJson(card), 'utf8');
  return `sha256:${hash.digest('hex')}`;
}

/** A model's files in `dir`: `<version>.json` (its card) and `<version>.onnx` (its graph). */
export async function readModelFiles(dir: string, version: string) {
  checkVersionName(version);
  const read = async (file: string) => {
    try {
      return await readFile(join(dir, file));
    } catch (err) {
      throw new InvalidArtifactError(
        version,
        `cannot read ${join(resolve(dir), file)}: ${(err as Error).message}`,
      );
    }
  };
  const [cardText, onnx] = await Promise.all([read(`${version}.json`), read(`${version}.onnx`)]);
  let card: unknown;
  try {
    card = JSON.parse(cardText.toString('utf8'));
  } catch (err) {
    throw new InvalidArtifactError(version, `${version}.json is not JSON: ${(err as Error).message}`);
  }
  return { card, onnx: new Uint8Array(onnx.buffer, onnx.byteOffset, onnx.byteLength) };
}

/** The versions `dir` holds as a pair `<v>.onnx` + `<v>.json` (a card alone, like a parity file, is not one). */
export async function modelPairsIn(dir: string): Promise<string[]> {
  const files = new Set(await readdir(dir));
  return [...files]
    .filter((f) => f.endsWith('.onnx') && files.has(`${f.slice(0, -'.onnx'.length)}.json`))
    .map((f) => f.slice(0, -'.onnx'.length))
    .sort();
}

/**
 * Checks what a registration checks before it writes: the name, the card (of this version, over the service's
 * features) and that ONNX Runtime loads the graph with the input and outputs the service uses. Returns the card
 * as the service reads it; throws a ModelVersionError.
 */
export async function checkModelArtifact(version: string, card: unknown, onnx: Uint8Array) {
  checkVersionName(version);
  const parsed = parseModelCard(version, card);
  const session = await createModelSession(version, onnx);
  await session.release();
  return parsed;
}

/** The pair `<version>.onnx` + `<version>.json` of `dir`, checked as a registration would; returns its digest. */
export async function checkModelPair(dir: string, version: string): Promise<string> {
  const { card, onnx } = await readModelFiles(dir, version);
  await checkModelArtifact(version, card, onnx);
  return modelDigest(onnx, card);
}

export interface ModelStore {
  /** Where the registry is, for messages: "the model registry (Postgres)". */
  readonly where: string;
  /**
   * Registers `version` (`by`: who or what) after checkModelArtifact; the same artifact again is `unchanged`.
   * A name bound to another digest, or retired, is refused (VersionConflictError, VersionRetiredError).
   */
  push(input: { version: string; card: unknown; onnx: Uint8Array; by: string }): Promise<PushOutcome>;
  list(): Promise<RegisteredVersion[]>;
  /** One version with its card; VersionNotRegisteredError when there is none. */
  show(version: string): Promise<RegisteredVersion & { card: Record<string, unknown> | null }>;
  /**
   * The artifact of a registered version, its bytes checked against its digest: VersionNotRegisteredError,
   * VersionRetiredError or DigestMismatchError otherwise.
   */
  get(version: string): Promise<ModelArtifact>;
  /** Throws as `get` would for a version the registry cannot serve, without reading its graph. */
  require(version: string): Promise<void>;
}

const summary = {
  version: modelVersions.version,
  digest: modelVersions.digest,
  retired: modelVersions.retired,
  note: modelVersions.note,
  registeredAt: modelVersions.registeredAt,
  registeredBy: modelVersions.registeredBy,
  onnxBytes: sql<number | null>`octet_length(${modelVersions.onnx})::int`,
  features: sql<number | null>`jsonb_array_length(${modelVersions.featureSchema})::int`,
};

export function createModelStore(db: Db, kind: 'postgres' | 'pglite'): ModelStore {
  const where = `the model registry (${kind === 'postgres' ? 'Postgres at DATABASE_URL' : 'PGlite in DATA_DIR'})`;

  async function find(version: string) {
    const [row] = await db.select(summary).from(modelVersions).where(eq(modelVersions.version, version));
    if (!row) throw new VersionNotRegisteredError(version, where);
    return row;
  }

  function servable(row: RegisteredVersion): asserts row is RegisteredVersion & { digest: string } {
    if (row.retired || row.digest === null) throw new VersionRetiredError(row.version, row.note);
  }

  /** The name's registered digest against the offered one: the same artifact, or a refusal. */
  function compare(row: RegisteredVersion, digest: string): PushOutcome {
    servable(row);
    if (row.digest !== digest) throw new VersionConflictError(row.version, row.digest, digest);
    return { outcome: 'unchanged', version: row.version, digest };
  }

  return {
    where,

    async push({ version, card, onnx, by }) {
      checkVersionName(version);
      const digest = modelDigest(onnx, card);
      const known = await find(version).catch((err: unknown) => {
        if (err instanceof VersionNotRegisteredError) return undefined;
        throw err;
      });
      // A known name is answered before the graph is loaded: the same bytes are unchanged, others refused.
      if (known) return compare(known, digest);
      const parsed = await checkModelArtifact(version, card, onnx);
      const inserted = await db
        .insert(modelVersions)
        .values({
          version,
          digest,
          card: card as Record<string, unknown>,
          onnx,
          featureSchema: parsed.feature_schema.map(({ name, unit }) => ({ name, unit })),
          registeredBy: by,
        })
        .onConflictDoNothing({ target: modelVersions.version })
        .returning({ version: modelVersions.version });
      // Two registrations of one name at once: the first row stands, the other is judged against it.
      if (inserted.length === 0) return compare(await find(version), digest);
      return { outcome: 'registered', version, digest };
    },

    list: () =>
      db
        .select(summary)
        .from(modelVersions)
        .orderBy(asc(modelVersions.registeredAt), asc(modelVersions.version)),

    async show(version) {
      const row = await find(version);
      const [full] = await db
        .select({ card: modelVersions.card })
        .from(modelVersions)
        .where(eq(modelVersions.version, version));
      return { ...row, card: full?.card ?? null };
    },

    async get(version) {
      const [row] = await db.select().from(modelVersions).where(eq(modelVersions.version, version));
      if (!row) throw new VersionNotRegisteredError(version, where);
      if (row.retired || !row.digest || !row.card || !row.onnx)
        throw new VersionRetiredError(version, row.note);
      const stored = modelDigest(row.onnx, row.card);
      if (stored !== row.digest) throw new DigestMismatchError(version, row.digest, stored);
      return { version, digest: row.digest, card: row.card, onnx: row.onnx };
    },

    async require(version) {
      servable(await find(version));
    },
  };
}
