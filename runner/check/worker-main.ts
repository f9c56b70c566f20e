// Runs one check inside a worker thread: imports the check and the code under check,
// runs the check, and posts the result. The runner owns the time limit (it can
// terminate this thread even in a synchronous infinite loop) and the sandbox vhost.
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { startTracking } from './socket-tracker.js';
import { CheckContext, type Check } from './context.js';
import { explainError } from './explain-error.js';
import { CheckFailure, CheckSkipped, type Finding } from './verdict.js';
import type { FromWorker, ToWorker, WorkerJob, WorkerResult } from './protocol.js';

const port = parentPort!;
const post = (msg: FromWorker) => port.postMessage(msg);
// A worker is started with its job, or started ahead of time (warm) and given the job later.
const job: WorkerJob =
  (workerData as WorkerJob | undefined) ??
  (await new Promise<WorkerJob>((resolve) => port.once('message', (msg: ToWorker) => msg.type === 'job' && resolve(msg.job))));

Object.assign(process.env, job.env); // this thread's own copy of the environment
// Must run before the learner's module is imported, so its sockets are seen.
startTracking();

let ctx: CheckContext | undefined;
let finished = false;

function finish(status: WorkerResult['status'], finding?: Finding) {
  if (finished) return;
  finished = true;
  post({ type: 'result', result: { status, finding, steps: ctx?.steps ?? [], notes: ctx?.notes ?? [], contract: ctx?.coverage } });
}

// The learner's code may crash the process: an 'error' event nobody listens to, a rejected promise nobody awaits.
function crashed(err: unknown) {
  const message = err instanceof Error ? err.message : String(err);
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
});

async function main() {
  const check = (await import(pathToFileURL(job.checkPath).href)).default as Check<unknown>;
  let target: unknown;
  try {
    target = await import(pathToFileURL(job.targetPath).href);
  } catch (err) {
    finish('failed', {
      summary: `Your file could not be loaded: ${(err as Error).message}`,
      why: 'Before it can check anything, the checker imports your file. A syntax error, a wrong import or code that throws at the top level stops it.',
      fix: `Run it on its own to see the full error: npx tsx ${job.targetPath}`,
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
  try {
    await check(ctx);
    finish('passed');
  } catch (err) {
    if (err instanceof CheckFailure) finish('failed', err.finding);
    else if (err instanceof CheckSkipped) finish('skipped', { summary: err.message });
    else finish('error', { summary: `The check itself broke: ${(err as Error).stack ?? err}` });
  } finally {
    await ctx.close();
  }
}

main().catch((err) => finish('error', { summary: `The check itself broke: ${(err as Error).stack ?? err}` }));
