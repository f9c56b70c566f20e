// Runs one check inside a worker thread: imports the check and the code under check,
// runs the check, and posts the result. The runner owns the time limit (it can
// terminate this thread even in a synchronous infinite loop) and the sandbox vhost.
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { startTracking } from './socket-tracker.js';
import { startReadingFrames } from './frames.js';
import { readFlow, startRecordingFlow, stepsAsNotes } from './flow.js';
import { CheckContext, type Check } from './context.js';
import { explainError } from './explain-error.js';
import { classifyCheckError } from './classify-error.js';
import { saveBugReport } from './bug-report.js';
import { learnerLocation, mapCompiledPaths } from './source-map.js';
import { CheckFailure, CheckSkipped, type Finding } from './verdict.js';
import type { FromWorker, ToWorker, WorkerJob, WorkerResult } from './protocol.js';
import { lap, type Timings } from './timings.js';

// Modules loaded: the worker's own start-up ends here (a warm spare's, once it has its job, below).
let startedAt = Date.now();
const port = parentPort!;
const post = (msg: FromWorker) => port.postMessage(msg);
// A worker is started with its job, or started ahead of time (warm) and given the job later.
const job: WorkerJob =
  (workerData as WorkerJob | undefined) ??
  (await new Promise<WorkerJob>((resolve) => port.once('message', (msg: ToWorker) => msg.type === 'job' && resolve(msg.job))));
if (!workerData) startedAt = Date.now();

Object.assign(process.env, job.env); // this thread's own copy of the environment
// Must run before the learner's module is imported, so its sockets are seen.
startTracking();
startReadingFrames();
// Only when a trace may be wanted (the learner's own code, `check` and `watch`): selfcheck and mutation runs never pay for it.
if (job.flow) startRecordingFlow();
// stdout and stderr reach the runner separately, each at its own pace; through one stream,
// what the code under check prints keeps its order in the verdict (console.error included).
process.stderr.write = process.stdout.write.bind(process.stdout) as typeof process.stderr.write;

let ctx: CheckContext | undefined;
let finished = false;
const timings: Timings = {};

function finish(status: WorkerResult['status'], finding?: Finding) {
  if (finished) return;
  finished = true;
  if (ctx && timings.learner === undefined && timings.connect !== undefined) Object.assign(timings, ctx.clock.stop()); // ended by a crash mid-check
  const result: WorkerResult = { status, finding, steps: ctx?.steps ?? [], notes: ctx?.notes ?? [], contract: ctx?.coverage, timings, startedAt };
  // Decoded only when asked for: a check that passes does not pay for it.
  if (job.flow === 'always' || (job.flow === 'failed' && status === 'failed')) result.flow = { ...readFlow(startedAt), notes: stepsAsNotes(ctx?.steps ?? [], startedAt) };
  void flushOutput().then(() => post({ type: 'result', result }));
}

/**
 * What the code under check printed reaches the runner apart from the result, a chunk at a
 * time as the runner acknowledges it; the runner ends this thread on the result. Let the
 * output leave first, or its last lines (often the most telling) are lost.
 */
function flushOutput(): Promise<unknown> {
  const flushed = [process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => s.write('', () => resolve())));
  return Promise.race([Promise.all(flushed), new Promise<void>((resolve) => setTimeout(resolve, 500).unref())]);
}

// The learner's code may crash the process: an 'error' event nobody listens to, a rejected promise nobody awaits.
function crashed(err: unknown) {
  const message = mapCompiledPaths(err instanceof Error ? err.message : String(err));
  const base = explainError('your code', err);
  finish('failed', {
    ...base,
    summary: `Your code crashed the process with an unhandled error: ${message}`,
    why: "In Node, an 'error' event with no listener, or a promise rejection nobody handles, ends the whole process. A real service would die here.",
    fix: "Register connection.on('error', …) and channel.on('error', …), and await (or .catch) every promise.",
  });
}
process.on('uncaughtException', crashed);
process.on('unhandledRejection', crashed);

let restartWaiter: ((r: { ok: boolean; reason?: string }) => void) | undefined;
port.on('message', (msg: ToWorker) => {
  if (msg.type === 'restart-result') restartWaiter?.(msg);
  // The runner's time limit is up: the flow so far, for the trace of a check that did not finish.
  if (msg.type === 'flow') post({ type: 'flow', flow: { ...readFlow(startedAt), notes: stepsAsNotes(ctx?.steps ?? [], startedAt) } });
});

async function main() {
  const loaded = lap();
  const check = (await import(pathToFileURL(job.checkPath).href)).default as Check<unknown>;
  let target: unknown;
  try {
    target = await import(pathToFileURL(job.targetPath).href);
    timings.load = loaded();
  } catch (err) {
    finish('failed', {
      summary: `Your file could not be loaded: ${mapCompiledPaths((err as Error).message)}`,
      why: 'Before it can check anything, the checker imports your file. A syntax error, a wrong import or code that throws at the top level stops it.',
      fix: `Run it on its own to see the full error: npx tsx ${path.relative(process.cwd(), job.sourcePath)}`,
      at: learnerLocation(err),
    });
    return;
  }
  ctx = new CheckContext({
    target,
    targetPath: job.targetPath,
    vhost: job.vhost,
    broker: job.broker,
    onStep: (text) => post({ type: 'step', text }),
    requestRestart: () =>
      new Promise((resolve) => {
        restartWaiter = resolve;
        post({ type: 'restart' });
      }),
  });
  // The environment first: a URL the checker cannot use is not the learner's mistake.
  const connected = lap();
  const unusable = await ctx.proveUrl();
  timings.connect = connected();
  if (unusable) return finish('error', unusable);
  ctx.clock.reset();
  try {
    await check(ctx);
    Object.assign(timings, ctx.clock.stop());
    finish('passed');
  } catch (err) {
    Object.assign(timings, ctx.clock.stop());
    if (err instanceof CheckFailure) finish('failed', err.finding);
    else if (err instanceof CheckSkipped) finish('skipped', { summary: err.message });
    else await escaped(err);
  } finally {
    await ctx.close();
  }
}

/**
 * Anything else that escapes the check. When the learner's code threw it, or the broker
 * refused one of the checker's own steps because of what that code left behind, it is a
 * failed verdict that says so; when the broker went away, the environment's; otherwise a
 * bug in the check, with a report saved for the workbook's authors.
 */
async function escaped(err: unknown): Promise<void> {
  const managementUi = job.broker.managementUrl.replace(/\/+$/, '');
  const classified = classifyCheckError(err, {
    lastBrokerError: ctx?.lastBrokerError,
    ui: (kind, name) => {
      const where = [kind === 'connections' ? undefined : job.vhost, name].filter((x) => x !== undefined);
      return [`${managementUi}/#/${kind}`, ...where.map((x) => encodeURIComponent(x!))].join('/');
    },
  });
  if (classified.kind === 'learner') return finish('failed', classified.finding);
  if (classified.kind === 'environment') return finish('error', classified.finding);
  const report = await saveBugReport({ id: job.id, targetPath: job.sourcePath, error: err, steps: ctx?.steps ?? [], brokerVersion: job.broker.version });
  const message = mapCompiledPaths(err instanceof Error ? err.message : String(err));
  finish('error', {
    summary: `Bug in the check for exercise ${job.id}: ${message}`,
    why: 'The checker itself failed on something it did not expect. This is most likely not a mistake in your code.',
    fix: report
      ? `Please report it to the workbook's authors with the file ${path.relative(process.cwd(), report)} (it holds the details). Meanwhile, run the check again or go on with the next exercise.`
      : "Please report it to the workbook's authors with the message above. Meanwhile, run the check again or go on with the next exercise.",
    report,
  });
}

main().catch(escaped);
