import autocannon from 'autocannon';

export interface LoadOptions {
  url: string;
  connections: number;
  durationS: number;
  /** Fixed request rate over all connections (soak); unset: as fast as the server answers. */
  overallRate?: number;
  /** A request body per call (distinct booking ids), or one body for every call. */
  body: (n: number) => string;
}

export interface LoadResult {
  requests_per_s: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  /** Responses with a 2xx status: the requests the server answered. */
  ok: number;
  /** Seconds the run lasted, as autocannon timed it. */
  duration_s: number;
  non_2xx: number;
  errors: number;
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? 0
    : (sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number);
const round2 = (x: number) => Math.round(x * 100) / 100;

/** One autocannon run; latencies are taken from every response (autocannon's own summary has no p95). */
export function load(options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let ok = 0;
  let n = 0;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationS,
        ...(options.overallRate ? { overallRate: options.overallRate } : {}),
        requests: [
          {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            setupRequest: (req) => {
              n += 1;
              return { ...req, body: options.body(n) };
            },
          },
        ],
      },
      (err, result) => {
        if (err) return reject(err);
        latencies.sort((a, b) => a - b);
        resolve({
          requests_per_s: Math.round(result.requests.average),
          p50_ms: round2(percentile(latencies, 50)),
          p95_ms: round2(percentile(latencies, 95)),
          p99_ms: round2(percentile(latencies, 99)),
          ok,
          duration_s: result.duration,
          non_2xx: result.non2xx,
          // autocannon's errors include its timeouts.
          errors: result.errors,
        });
      },
    );
    instance.on('response', (_client: unknown, status: number, _bytes: number, responseTimeMs: number) => {
      latencies.push(responseTimeMs);
      if (status >= 200 && status < 300) ok += 1;
    });
  });
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

/** A benchmark's numeric setting from the environment, or its default. */
export const envNumber = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
