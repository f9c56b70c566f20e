// The workbook's command line. Every npm script is a subcommand of this file:
//   npm run chapter 2   ->   tsx runner/cli.ts chapter 2
import { Command, CommanderError } from 'commander';
import pc from 'picocolors';
import { EXIT, UserError } from './exit-codes.js';
import { disposeAll } from './sandbox/sandbox.js';
import { chapterCommand } from './commands/chapter.js';
import { checkCommand } from './commands/check.js';
import { watchCommand } from './commands/watch.js';
import { hintCommand } from './commands/hint.js';
import { progressCommand } from './commands/progress.js';
import { resetCommand } from './commands/reset.js';
import { solutionCommand } from './commands/solution.js';
import { brokerCommand } from './commands/broker.js';
import { doctorCommand } from './commands/doctor.js';
import { selfcheckCommand } from './commands/selfcheck.js';

let exitCode: number = EXIT.OK;
// Commander passes the parsed arguments; each command returns its exit code.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const run = <A extends any[]>(fn: (...a: A) => number | Promise<number>) =>
  async (...args: A) => {
    exitCode = await fn(...args);
  };

const program = new Command('workbook')
  .description('rabbitmq-workbook: learn RabbitMQ against a real broker')
  .exitOverride()
  .showHelpAfterError();

program.command('chapter').argument('<N>', 'chapter number').description('read chapter N, see its exercises, run its live demo')
  .option('--no-demo', 'only the text').option('--no-text', 'only the demo')
  .action(run((n: string, o: { demo: boolean; text: boolean }) => chapterCommand(n, o)));

program.command('check').argument('[ids...]', '2 = a chapter, 2.1 = one exercise; none = the current exercise')
  .description('check exercises against the live broker')
  .option('--solutions', 'check the reference solutions instead of your files')
  .option('--json', 'machine-readable verdicts')
  .action(run((ids: string[], o: { solutions?: boolean; json?: boolean }) => checkCommand(ids, o)));

program.command('watch').argument('[id]').description('re-check an exercise on every save')
  .action(run((id?: string) => watchCommand(id)));

program.command('hint').argument('[id]').option('--all', 'every hint at once').description('the next hint for an exercise')
  .action(run((id: string | undefined, o: { all?: boolean }) => hintCommand(id, o)));

program.command('progress').description('every exercise with its status, and where to resume')
  .action(run(() => progressCommand()));

program.command('reset').argument('<id>').description("restore an exercise's starter (your file is backed up) and drop its broker state")
  .action(run((id: string) => resetCommand(id)));

program.command('solution').argument('<id>').option('--force', 'show it even if the exercise has not passed')
  .description('the reference solution, once the exercise has passed')
  .action(run((id: string, o: { force?: boolean }) => solutionCommand(id, o)));

program.command('broker').argument('<action>', 'start | stop | status').description('manage the broker the workbook uses')
  .action(run((a: string) => brokerCommand(a)));

program.command('doctor').description('check Node, the broker, Docker, rabbitmq-server and ports')
  .action(run(() => doctorCommand()));

program.command('selfcheck').argument('[ids...]').option('--verbose', 'print every verdict')
  .description('the workbook checks itself: starters fail, solutions pass, known-wrong variants fail as expected')
  .action(run((ids: string[], o: { verbose?: boolean }) => selfcheckCommand(ids, o)));

process.once('SIGINT', () => {
  // Ctrl-C mid-check: remove the sandbox vhosts this process created, then exit.
  void disposeAll().finally(() => process.exit(130));
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  } else if (err instanceof UserError) {
    console.error(pc.red(err.message));
    exitCode = err.exitCode;
  } else {
    console.error(err);
    exitCode = EXIT.ENVIRONMENT;
  }
}
process.exit(exitCode);
