import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Logger } from 'pino';
import { FlagConfigError } from './flag-config.js';
import type { FlagStore } from './flag-store.js';
import { editFlagText, type FlagChange, type FlagEdit } from './flag-writer.js';

/**
 * The Kubernetes API refused or failed a change: forbidden (RBAC), not found, conflicts past the retries, a 5xx,
 * or no answer at all (refused connection, timeout: `status` 0).
 */
export class FlagStoreError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'FlagStoreError';
  }
}

export interface KubernetesFlagStoreOptions {
  namespace: string;
  name: string;
  /** The API server: https://KUBERNETES_SERVICE_HOST:PORT inside a pod. */
  apiUrl: string;
  /** The service account's token, read at every request (projected tokens rotate). */
  tokenFile: string;
  caFile: string;
  logger: Logger;
  /** Conflicting writes (409) tried again from a fresh read, at most. */
  maxConflicts?: number;
  /** How long one request may wait for the API's answer (5 s by default). */
  timeoutMs?: number;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** RFC 7386 merge patch from `before` to `after`: keys gone are null, arrays and scalars replaced whole. */
function mergePatch(before: Json, after: Json): Json {
  const isObject = (v: Json): v is { [key: string]: Json } =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(before) || !isObject(after)) return after;
  const patch: { [key: string]: Json } = {};
  for (const key of Object.keys(before)) if (!(key in after)) patch[key] = null;
  for (const [key, value] of Object.entries(after)) {
    const old = before[key];
    if (old === undefined) patch[key] = value;
    else if (JSON.stringify(old) !== JSON.stringify(value)) patch[key] = mergePatch(old, value);
  }
  return patch;
}

/**
 * The FeatureFlag the OpenFeature Operator serves to every pod's flagd sidecar, changed through the Kubernetes
 * API: GET, the same edit and validation as the file, then a merge PATCH carrying the resourceVersion it read,
 * so a concurrent writer makes it 409 and the change is made again on what that writer left.
 */
export function kubernetesFlagStore(o: KubernetesFlagStoreOptions): FlagStore {
  const path = `/apis/core.openfeature.dev/v1beta1/namespaces/${o.namespace}/featureflags/${o.name}`;
  const where = `featureflags/${o.name} in namespace ${o.namespace}`;
  const log = o.logger.child({ component: 'kubernetes-flags' });
  const timeoutMs = o.timeoutMs ?? 5000;

  function call(method: 'GET' | 'PATCH', body?: string): Promise<{ status: number; json: unknown }> {
    const url = new URL(path, o.apiUrl);
    const token = existsSync(o.tokenFile) ? readFileSync(o.tokenFile, 'utf8').trim() : undefined;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body) headers['content-type'] = 'application/merge-patch+json';
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      // No answer, or half of one, is a failed change like a refused one: the rollback says it was not written.
      const unreachable = (err: Error) =>
        reject(new FlagStoreError(`cannot reach the Kubernetes API at ${o.apiUrl}: ${err.message}`, 0));
      const req = send(
        url,
        {
          method,
          headers,
          timeout: timeoutMs,
          ...(url.protocol === 'https:' && existsSync(o.caFile) ? { ca: readFileSync(o.caFile) } : {}),
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('error', unreachable);
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => {
            let json: unknown = null;
            try {
              json = JSON.parse(text);
            } catch {
              json = { message: text.slice(0, 200) };
            }
            resolve({ status: res.statusCode ?? 0, json });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', unreachable);
      req.end(body);
    });
  }

  const refused = (status: number, json: unknown, doing: string) => {
    const message = (json as { message?: string })?.message ?? `HTTP ${status}`;
    if (status === 403)
      return new FlagStoreError(
        `forbidden to ${doing} ${where} (the service account's RBAC): ${message}`,
        403,
      );
    if (status === 404) return new FlagStoreError(`${where} not found: ${message}`, 404);
    if (status === 422 || status === 400)
      return new FlagConfigError(`the Kubernetes API refused the change of ${where}: ${message}`);
    return new FlagStoreError(`cannot ${doing} ${where}: HTTP ${status}: ${message}`, status);
  };

  async function read() {
    const { status, json } = await call('GET');
    if (status !== 200) throw refused(status, json, 'read');
    const resource = json as {
      metadata: { resourceVersion: string };
      spec?: { flagSpec?: { flags?: Json } };
    };
    const flags = resource.spec?.flagSpec?.flags;
    if (!flags) throw new FlagConfigError(`${where} has no spec.flagSpec.flags`);
    return { flags, resourceVersion: resource.metadata.resourceVersion };
  }

  return {
    where,
    async read() {
      return `${JSON.stringify({ flags: (await read()).flags }, null, 2)}\n`;
    },
    async change(edit: FlagEdit): Promise<FlagChange> {
      for (let attempt = 0; ; attempt++) {
        const { flags, resourceVersion } = await read();
        const { change, doc } = editFlagText(JSON.stringify({ flags }), edit);
        if (!change.changed) return change;
        const patch = {
          metadata: { resourceVersion },
          spec: { flagSpec: { flags: mergePatch(flags, doc.flags as unknown as Json) } },
        };
        const { status, json } = await call('PATCH', JSON.stringify(patch));
        if (status === 200) return change;
        if (status === 409 && attempt < (o.maxConflicts ?? 5)) {
          log.info(
            { attempt: attempt + 1, resource_version: resourceVersion },
            'FeatureFlag changed meanwhile; again',
          );
          continue;
        }
        throw refused(status, json, 'patch');
      }
    },
  };
}
