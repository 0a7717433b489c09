import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
const isObject = (v: Json | undefined): v is { [key: string]: Json } =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function applyMergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return patch;
  const result: { [key: string]: Json } = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key] ?? null, value);
  }
  return result;
}

/**
 * A stand-in for the Kubernetes API server (none can run on these machines), for one FeatureFlag: GET, and
 * merge PATCH with the API's optimistic concurrency (a stale metadata.resourceVersion is a 409), its RBAC
 * (a verb not allowed is a 403) and the CRD's schema (a flag without state, variants or defaultVariant is a 422);
 * and its outages: answering 5xx (`failNext`), hanging (`stall`), gone (`close`).
 */
export async function startKubernetesApiStandIn(options: { namespace: string; name: string; flags: Json }) {
  const path = `/apis/core.openfeature.dev/v1beta1/namespaces/${options.namespace}/featureflags/${options.name}`;
  let resource: { [key: string]: Json } = {
    apiVersion: 'core.openfeature.dev/v1beta1',
    kind: 'FeatureFlag',
    metadata: { name: options.name, namespace: options.namespace, resourceVersion: '1' },
    spec: { flagSpec: { flags: options.flags } },
  };
  let version = 1;
  const allowed = new Set(['get', 'patch']);
  let concurrentWrites = 0;
  let failing: { code: number; remaining: number } | null = null;
  let stalled = false;
  const requests: { method: string; authorization: string | undefined; traceparent: string | undefined }[] =
    [];
  const status = (res: import('node:http').ServerResponse, code: number, reason: string, message: string) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code }));
  };
  const server = createServer((req, res) => {
    requests.push({
      method: req.method ?? '',
      authorization: req.headers.authorization,
      traceparent: req.headers.traceparent as string | undefined,
    });
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      if (stalled) return;
      if (failing && failing.remaining > 0) {
        failing.remaining -= 1;
        return status(res, failing.code, 'InternalError', `the API server answers ${failing.code}`);
      }
      if (req.url !== path) return status(res, 404, 'NotFound', `featureflags "${req.url}" not found`);
      const verb = req.method === 'GET' ? 'get' : req.method === 'PATCH' ? 'patch' : '';
      if (!allowed.has(verb))
        return status(
          res,
          403,
          'Forbidden',
          `featureflags.core.openfeature.dev "${options.name}" is forbidden: User "system:serviceaccount:${options.namespace}:delay-prediction" cannot ${verb} resource "featureflags"`,
        );
      if (verb === 'get') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(resource));
      }
      // Another writer lands between this client's read and its write.
      if (concurrentWrites > 0) {
        concurrentWrites -= 1;
        version += 1;
        (resource.metadata as { [key: string]: Json }).resourceVersion = String(version);
      }
      const patch = JSON.parse(body) as { metadata?: { resourceVersion?: string } };
      const current = (resource.metadata as { resourceVersion: string }).resourceVersion;
      if (patch.metadata?.resourceVersion && patch.metadata.resourceVersion !== current)
        return status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on featureflags.core.openfeature.dev "${options.name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      const next = applyMergePatch(resource, patch as Json) as { [key: string]: Json };
      const flags = ((next.spec as { flagSpec: { flags: Json } }).flagSpec.flags ?? {}) as {
        [key: string]: Json;
      };
      for (const [key, flag] of Object.entries(flags)) {
        const f = flag as { state?: string; variants?: Json; defaultVariant?: string };
        if (!f.state || !f.variants || !f.defaultVariant)
          return status(
            res,
            422,
            'Invalid',
            `FeatureFlag.core.openfeature.dev "${options.name}" is invalid: spec.flagSpec.flags.${key}: Required value`,
          );
      }
      version += 1;
      resource = next;
      (resource.metadata as { [key: string]: Json }).resourceVersion = String(version);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(resource));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    flags: () => (resource.spec as { flagSpec: { flags: Json } }).flagSpec.flags,
    setFlags(flags: Json) {
      version += 1;
      resource = { ...resource, spec: { flagSpec: { flags } } };
      (resource.metadata as { [key: string]: Json }).resourceVersion = String(version);
    },
    /** The next `n` PATCHes find the resource changed by another writer since their read. */
    concurrentWrites(n: number) {
      concurrentWrites = n;
    },
    forbid(verb: 'get' | 'patch') {
      allowed.delete(verb);
    },
    /** The next `n` requests are answered `code` (an API server failing: 500, 503). */
    failNext(code: number, n = Number.POSITIVE_INFINITY) {
      failing = { code, remaining: n };
    },
    /** Every request from now on is read and never answered (an API server that hangs). */
    stall() {
      stalled = true;
    },
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
