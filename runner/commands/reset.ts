// npm run reset ID: restores the starter (after backing up the learner's file) and
// drops the broker state the exercise creates when run on its own.
import { copyFileSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import pc from 'picocolors';
import { workbook } from '../session.js';
import { resolveOne } from '../ids.js';
import { updateProgress } from '../progress.js';
import { paths, rel, ROOT } from '../paths.js';
import { findBroker } from '../broker/find.js';
import { managementFor } from '../broker/management.js';
import { keptVhosts } from '../check/kept.js';
import { EXIT, UserError } from '../exit-codes.js';

export async function resetCommand(id: string): Promise<number> {
  const exercise = resolveOne(workbook(), id);
  const commit = pristineCommit(exercise.starterPath);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const file of exercise.starterFiles) {
    if (existsSync(file)) {
      mkdirSync(paths.backups, { recursive: true });
      const backup = path.join(paths.backups, `${exercise.id}-${stamp}-${path.basename(file)}`);
      copyFileSync(file, backup);
      console.log(`Your version is saved as ${rel(backup)}`);
    }
    writeFileSync(file, gitShow(commit, file));
    console.log(`${pc.green('✓')} Restored the starter: ${rel(file)}`);
  }

  updateProgress((p) => {
    delete p.exercises[exercise.id];
    p.current = exercise.id;
  });

  // Broker state is optional to clean: the file is restored even with no broker running.
  const broker = await findBroker({ start: false }).catch(() => undefined);
  if (!broker) {
    console.log(pc.dim('No broker is running, so there was no broker state to drop.'));
    return EXIT.OK;
  }
  const mgmt = managementFor(broker);
  // A classroom account has no vhost "/": its code run on its own uses the learner's demo vhost.
  const vhost = broker.classroom?.demoVhost ?? '/';
  for (const q of exercise.state.queues) await mgmt.deleteQueue(vhost, q);
  for (const x of exercise.state.exchanges) await mgmt.deleteExchange(vhost, x);
  if (!broker.classroom) await keptVhosts.replace(exercise.id, undefined, broker);
  const dropped = [...exercise.state.queues.map((q) => `queue ${q}`), ...exercise.state.exchanges.map((x) => `exchange ${x}`)];
  console.log(`${pc.green('✓')} Dropped ${dropped.length ? `${dropped.join(', ')} from vhost "${vhost}"` : 'nothing (this exercise keeps no state)'}${broker.classroom ? '' : ` and the kept sandbox of ${exercise.id}`}.`);
  return EXIT.OK;
}

/**
 * The commit holding the starter as the workbook shipped it: the newest commit in which the
 * starter file still has its TODOs (a learner who committed their work still gets the real
 * starter). Its siblings (e.g. 01-outbox.sql) are restored from the same commit.
 */
function pristineCommit(file: string): string {
  const relPath = path.relative(ROOT, file);
  let commits: string[];
  try {
    commits = execFileSync('git', ['log', '--format=%H', '--', relPath], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    throw new UserError(`Cannot restore ${relPath}: the workbook is not a git checkout (git log failed). Re-download the file from the workbook's repository.`, EXIT.ENVIRONMENT);
  }
  const commit = commits.find((c) => gitShow(c, file).includes('TODO'));
  if (!commit) throw new UserError(`No committed version of ${relPath} with its TODOs was found in git history.`, EXIT.ENVIRONMENT);
  return commit;
}

function gitShow(commit: string, file: string): string {
  return execFileSync('git', ['show', `${commit}:${path.relative(ROOT, file)}`], { cwd: ROOT, encoding: 'utf8' });
}
