import { context } from '@opentelemetry/api';
import { getRPCMetadata, RPCType } from '@opentelemetry/core';
import type { MiddlewareHandler } from 'hono';

/**
 * Tells the http instrumentation which route answered (semantic conventions: `http.route`), once Hono has
 * matched it: the server span is then named `POST /v1/predictions` and `http_server_request_duration` carries
 * `http_route`. Route templates are bounded; an unmatched path (a 404) has no route.
 */
export const routeTelemetry: MiddlewareHandler = async (c, next) => {
  await next();
  const route = c.req.matchedRoutes.filter((r) => r.method !== 'ALL').at(-1)?.path;
  const rpc = getRPCMetadata(context.active());
  if (route && rpc?.type === RPCType.HTTP) rpc.route = route;
};
