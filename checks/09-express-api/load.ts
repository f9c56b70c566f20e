// Load for the checks of chapter 9 (9.4 to 9.6): autocannon, in the check's worker thread, with
// every answer recorded (status, body, headers), so that a check can match each answer with
// what the broker holds. autocannon keeps its connections open (keep-alive) and sends each
// connection's next request as soon as the previous answer arrived.
import autocannon from 'autocannon';

export interface LoadReply {
  /** The n-th request sent (from 0), as setupRequest numbered it. */
  n: number;
  status: number;
  body: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
}

export interface LoadOptions {
  /** The app's base URL, e.g. http://127.0.0.1:40123 */
  url: string;
  method: 'GET' | 'POST';
  /** The path of request n. */
  path: (n: number) => string;
  /** The JSON body of request n (POST). */
  json?: (n: number) => unknown;
  amount: number;
  /** Connections open at once (each with one request in flight). */
  connections: number;
  /** Requests per second over all connections (default: as fast as answers come). */
  overallRate?: number;
  /** A request without an answer after this many seconds counts as a time-out (default 10). */
  timeoutSec?: number;
  /** Called with each answer as it arrives. */
  onReply?: (reply: LoadReply) => void;
}

export interface LoadRun {
  /** Resolves when every request was sent and answered (or failed), or stop() was called. */
  done: Promise<LoadOutcome>;
  /** Stops sending; done resolves with what came so far. */
  stop(): void;
}

export interface LoadOutcome {
  replies: LoadReply[];
  /** Requests sent (autocannon counts a request when it is written). */
  sent: number;
  /** Connection errors (refused, reset) and time-outs. */
  errors: number;
  timeouts: number;
  /** Latencies of the answered requests, in ms. */
  latencies: number[];
  durationMs: number;
}

/** Starts the load at once; see LoadRun. */
export function startLoad(opts: LoadOptions): LoadRun {
  const replies: LoadReply[] = [];
  const latencies: number[] = [];
  let next = 0;
  const started = Date.now();
  let finish: (outcome: LoadOutcome) => void = () => undefined;
  let fail: (err: unknown) => void = () => undefined;
  const done = new Promise<LoadOutcome>((resolve, reject) => ([finish, fail] = [resolve, reject]));
  // With a callback, autocannon returns its instance (stop(), events) instead of a promise.
  const instance = autocannon({
    url: opts.url,
    connections: opts.connections,
    amount: opts.amount,
    overallRate: opts.overallRate,
    timeout: opts.timeoutSec ?? 10,
    requests: [
      {
        setupRequest: (req, context) => {
          const n = next++;
          (context as { n?: number }).n = n;
          const json = opts.json?.(n);
          return {
            ...req,
            method: opts.method,
            path: opts.path(n),
            ...(json === undefined ? {} : { body: JSON.stringify(json), headers: { 'content-type': 'application/json' } }),
          };
        },
        onResponse: (status, body, context, headers) => {
          const lower = Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
          const reply: LoadReply = { n: (context as { n?: number }).n ?? -1, status, body, headers: lower };
          replies.push(reply);
          opts.onReply?.(reply);
        },
      },
    ],
  }, (err, result) => {
    if (err) fail(err);
    else finish({ replies, sent: next, errors: result.errors, timeouts: result.timeouts, latencies, durationMs: Date.now() - started });
  });
  instance.on('response', (_client, _status, _bytes, responseTime) => latencies.push(responseTime));
  return { done, stop: () => instance.stop() };
}
