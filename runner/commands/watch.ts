// npm run watch [ID] [-- --verbose]: re-checks the exercise on every save and says what to do next.
// Keys: h hint · n next exercise · l list · c check now · q quit.
import readline from 'node:readline';
import chokidar from 'chokidar';
import pc from 'picocolors';
import { broker, workbook } from '../session.js';
import { resolveOne } from '../ids.js';
import { currentExercise, loadProgress, recordResult, updateProgress } from '../progress.js';
import { jobFor, keepWorkerWarm, runCheck } from '../check/run.js';
import { formatVerdict } from '../check/report.js';
import { disposeAll } from '../sandbox/sandbox.js';
import { rel } from '../paths.js';
import { EXIT, UserError } from '../exit-codes.js';
import type { Exercise } from '../manifest/load.js';
import { hintCommand } from './hint.js';
import { progressCommand } from './progress.js';
import { ENVIRONMENT_PROBLEM } from './check.js';

export async function watchCommand(id: string | undefined, opts: { verbose?: boolean } = {}): Promise<number> {
  const wb = workbook();
  let exercise: Exercise | undefined = id ? resolveOne(wb, id) : currentExercise(wb, loadProgress());
  if (!exercise) throw new UserError('Every exercise has passed. Name one to watch: npm run watch 2.1', EXIT.USAGE);
  const b = await broker();
  keepWorkerWarm();

  let running = false;
  let again = false;
  const check = async () => {
    if (running) {
      again = true; // saved while a check ran: run once more afterwards
      return;
    }
    running = true;
    const ex = exercise!;
    console.clear();
    console.log(pc.dim(`Checking ${ex.id} (${rel(ex.starterPath)})…`));
    const v = await runCheck(jobFor(ex, 'exercise'), b, { keepFailedSandbox: true });
    if (v.status === 'passed' || v.status === 'failed') recordResult(ex.id, v.status === 'passed');
    console.clear();
    console.log(formatVerdict(v, { verbose: opts.verbose }) + '\n');
    if (v.status === 'passed') {
      const next = currentExercise(wb, loadProgress());
      console.log(pc.green(next ? `Passed! Press n for the next exercise: ${next.id} "${next.title}".` : 'Passed, and that was the last one. Well done!'));
    } else if (v.status === 'error') {
      console.log(pc.magenta(`${ENVIRONMENT_PROBLEM}, then press c to check again.`));
    } else {
      console.log(pc.dim(`Edit ${rel(ex.starterPath)} and save to check again.`));
    }
    console.log(pc.dim('Keys: h hint · n next · l list · c check now · q quit'));
    running = false;
    if (again) {
      again = false;
      await check();
    }
  };

  const watcher = watchExercise(exercise.starterFiles, () => void check());
  const switchTo = async (next: Exercise) => {
    await watcher.unwatch(exercise!.starterFiles);
    exercise = next;
    updateProgress((p) => (p.current = next.id));
    watcher.add(next.starterFiles);
    await check();
  };

  const done = new Promise<void>((resolve) => {
    const quit = () => {
      process.stdin.setRawMode?.(false);
      process.stdin.pause();
      void watcher.close().then(disposeAll).then(resolve);
    };
    if (!process.stdin.isTTY) return; // no keys without a terminal: watch until killed
    readline.emitKeypressEvents(process.stdin);
    process.stdin.setRawMode(true);
    process.stdin.on('keypress', (_s: string, key: readline.Key) => {
      if (key.ctrl && key.name === 'c') return quit();
      switch (key.name) {
        case 'q':
          return quit();
        case 'h':
          hintCommand(exercise!.id, {});
          return;
        case 'l':
          progressCommand();
          return;
        case 'c':
          void check();
          return;
        case 'n': {
          const next = currentExercise(wb, loadProgress());
          if (next && next !== exercise) void switchTo(next);
          else console.log(pc.dim(next ? 'Finish this one first (or: npm run watch <id>).' : 'No exercise left.'));
          return;
        }
      }
    });
  });

  await check();
  await done;
  return EXIT.OK;
}

/**
 * Calls `onSave` after each save of one of `files`. Waits for the write to settle (30 ms) so an
 * editor that writes in several steps triggers one check, not three.
 */
export function watchExercise(files: string | string[], onSave: () => void) {
  const watcher = chokidar.watch(files, { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 30, pollInterval: 10 } });
  watcher.on('change', onSave);
  return watcher;
}
