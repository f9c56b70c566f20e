// npm run watch [ID] [-- --verbose]: re-checks the exercise on every save and says what to do next.
// Keys: h hint · n next exercise · l list · c check now · q quit. The screen always shows the
// last verdict first; a hint or the list appears under it, in place of the previous one.
import readline from 'node:readline';
import chokidar from 'chokidar';
import pc from 'picocolors';
import { broker, workbook } from '../session.js';
import { resolveOne } from '../ids.js';
import { currentExercise, loadProgress, recordResult, updateProgress } from '../progress.js';
import { jobFor, keepWorkerWarm, runCheck } from '../check/run.js';
import { startTrace } from '../check/trace.js';
import { formatVerdict, indented } from '../check/report.js';
import { disposeAll } from '../sandbox/sandbox.js';
import { rel } from '../paths.js';
import { EXIT, UserError } from '../exit-codes.js';
import type { Exercise } from '../manifest/load.js';
import { nextHint } from './hint.js';
import { exerciseLines, passedCount } from './progress.js';
import { ENVIRONMENT_PROBLEM, missingFileVerdict } from './check.js';

const KEYS = 'Keys: h hint · n next · l list · c check now · q quit';

export async function watchCommand(id: string | undefined, opts: { verbose?: boolean } = {}): Promise<number> {
  const wb = workbook();
  let exercise: Exercise | undefined = id ? resolveOne(wb, id) : currentExercise(wb, loadProgress());
  if (!exercise) throw new UserError('Every exercise has passed. Name one to watch: npm run watch 2.1', EXIT.USAGE);
  // The exercise being watched is the one to resume, and the one n moves on from.
  if (id) updateProgress((p) => (p.current = exercise!.id));
  const b = await broker();
  keepWorkerWarm();
  // In a joined classroom, each verdict also goes to the instructor's dashboard.
  const events = b.classroom ? new (await import('../classroom/events.js')).CheckEvents(b) : undefined;

  // The last verdict and what to do next: every redraw starts with it.
  let verdictLines: string[] = [];
  const show = (below: string[] = []) => {
    console.clear();
    console.log([...verdictLines, ...below, pc.dim(KEYS)].join('\n'));
  };

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
    const missing = missingFileVerdict(ex, 'exercise');
    const v = missing ?? (await runCheck(jobFor(ex, 'exercise'), b, { keepFailedSandbox: true, recordFlow: 'failed' }));
    // The reference solution runs through the same check in the background, for the web reader's trace (check/trace.ts).
    const tracing = v.flow !== undefined && startTrace(ex, v, b) !== undefined;
    if (!missing && (v.status === 'passed' || v.status === 'failed')) recordResult(ex.id, v.status === 'passed');
    verdictLines = [formatVerdict(v, { verbose: opts.verbose, watch: true }), ''];
    events?.report(v);
    if (v.status === 'passed') {
      const next = currentExercise(wb, loadProgress());
      verdictLines.push(pc.green(next ? `Passed! Press n for the next exercise: ${next.id} "${next.title}".` : 'Passed, and that was the last one. Well done!'));
    } else if (v.status === 'error') {
      verdictLines.push(pc.magenta(`${ENVIRONMENT_PROBLEM}, then press c to check again.`));
    } else {
      verdictLines.push(pc.dim(`Edit ${rel(ex.starterPath)} and save to check again.`));
      if (tracing) verdictLines.push(pc.dim(`Your message flow beside the reference solution's: npm run web, then http://127.0.0.1:4173/trace/${ex.id}`));
    }
    show();
    running = false;
    if (again) {
      again = false;
      await check();
    }
  };

  /** The exercises of the chapter being worked on, under the verdict (the whole course would push it off the screen). */
  const list = () => {
    const progress = loadProgress();
    const chapter = wb.chapter(exercise!.chapter)!;
    return ['', pc.bold(`${chapter.number}. ${chapter.title}`), ...exerciseLines(chapter, progress, exercise), pc.dim(`${passedCount(wb, progress)} npm run progress lists every chapter.`), ''];
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
      void watcher.close().then(disposeAll).then(() => events?.close()).then(resolve);
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
          return show(['', ...nextHint(exercise!, { watch: true }).map((line) => indented(0, line, process.stdout.columns)), '']);
        case 'l':
          return show(list());
        case 'c':
          void check();
          return;
        case 'n': {
          const next = currentExercise(wb, loadProgress());
          if (next && next !== exercise) void switchTo(next);
          else show(['', pc.dim(next ? 'Finish this one first (or: npm run watch <id>).' : 'No exercise left.'), '']);
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
  // 'add': a file that was missing (deleted, or restored by npm run reset in another terminal) is back.
  watcher.on('change', onSave).on('add', onSave);
  return watcher;
}
