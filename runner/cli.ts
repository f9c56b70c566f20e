// The workbook's command line. Every npm script is a subcommand of this file:
//   npm run chapter 2   ->   tsx runner/cli.ts chapter 2
import { Command, CommanderError } from 'commander';
import pc from 'picocolors';
import { EXIT, UserError } from './exit-codes.js';
import { pagerOpen } from './chapter/pager.js';

// Commands are imported when used: `npm run hint` need not load the Markdown renderer,
// the file watcher and the AMQP client.
const commands = {
  chapter: () => import('./commands/chapter.js'),
  check: () => import('./commands/check.js'),
  watch: () => import('./commands/watch.js'),
  hint: () => import('./commands/hint.js'),
  progress: () => import('./commands/progress.js'),
  reset: () => import('./commands/reset.js'),
  solution: () => import('./commands/solution.js'),
  broker: () => import('./commands/broker.js'),
  doctor: () => import('./commands/doctor.js'),
  selfcheck: () => import('./commands/selfcheck.js'),
  variant: () => import('./commands/variant.js'),
  lab: () => import('./commands/lab.js'),
  mutation: () => import('./commands/mutation.js'),
  classroom: () => import('./commands/classroom.js'),
  web: () => import('./web/command.js'),
};

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
  .option('--no-pager', 'print the text at once, even when it is longer than the terminal')
  .action(run((n: string, o: { demo: boolean; text: boolean; pager: boolean }) => commands.chapter().then((m) => m.chapterCommand(n, o))));

program.command('check').argument('[ids...]', '2 = a chapter, 2.1 = one exercise; none = the current exercise')
  .description('check exercises against the live broker')
  .option('--solutions', 'check the reference solutions instead of your files')
  .option('--json', 'machine-readable verdicts, and nothing else on stdout (npm run -s check -- --json)')
  .option('--verbose', 'everything your code printed, also when it passed')
  .action(run((ids: string[], o: { solutions?: boolean; json?: boolean; verbose?: boolean }) => commands.check().then((m) => m.checkCommand(ids, o))));

program.command('watch').argument('[id]').description('re-check an exercise on every save')
  .option('--verbose', 'everything your code printed, also when it passed')
  .action(run((id: string | undefined, o: { verbose?: boolean }) => commands.watch().then((m) => m.watchCommand(id, o))));

program.command('hint').argument('[id]').option('--all', 'every hint at once').description('the next hint for an exercise')
  .action(run((id: string | undefined, o: { all?: boolean }) => commands.hint().then((m) => m.hintCommand(id, o))));

program.command('progress').description('every exercise with its status, and where to resume')
  .option('--json', 'machine-readable: every exercise with its status, attempts and hints (npm run -s progress -- --json)')
  .action(run((o: { json?: boolean }) => commands.progress().then((m) => m.progressCommand(o))));

program.command('reset').argument('<id>').description("restore an exercise's starter (your file is backed up) and drop its broker state")
  .action(run((id: string) => commands.reset().then((m) => m.resetCommand(id))));

program.command('solution').argument('<id>').option('--force', 'show it even if the exercise has not passed')
  .description('the reference solution, once the exercise has passed')
  .action(run((id: string, o: { force?: boolean }) => commands.solution().then((m) => m.solutionCommand(id, o))));

program.command('broker').argument('<action>', 'start | stop | status, or cluster').argument('[clusterAction]', 'after cluster: start | stop | status (the local three-node cluster)')
  .description('manage the broker the workbook uses, or the local three-node cluster (chapter 8)')
  .action(run((a: string, c: string | undefined) => commands.broker().then((m) => m.brokerCommand(a, c))));

program.command('doctor').description('check Node, the broker, Docker, rabbitmq-server and ports')
  .action(run(() => commands.doctor().then((m) => m.doctorCommand())));

program.command('selfcheck').argument('[ids...]').option('--verbose', 'print every verdict')
  .option('--timings', 'for each check, and in all, where the time went (sandbox, worker, your code, waiting…)')
  .option('--concurrency <n>', 'checks at once (default: see runner/selfcheck.ts)')
  .description('the workbook checks itself: starters fail, solutions pass, known-wrong variants fail as expected')
  .action(run((ids: string[], o: { verbose?: boolean; timings?: boolean; concurrency?: string }) => commands.selfcheck().then((m) => m.selfcheckCommand(ids, o))));

program.command('variant').argument('<action>', 'open | save').argument('<id>', 'exercise id').argument('<name>', 'variant name (ok-… for an alternative solution)')
  .description('for authors: open a known-wrong variant or alternative solution as a file to edit, save it back as its patch')
  .action(run((action: string, id: string, name: string) => commands.variant().then((m) => m.variantCommand(action, id, name))));

program.command('lab').argument('<name>', 'confirms | failover | shop').option('--messages <n>', 'confirms: how many messages', '50000')
  .option('--cycles <n>', 'failover: how many leader kills', '20')
  .option('--orders <n>', 'shop: how many orders (default 300)')
  .option('--rate <r>', 'shop: orders placed per second (default 50)')
  .option('--record', 'failover, shop: write the results to BENCHMARKS.md')
  .option('--measure-start <n>', 'failover: first stop and start the cluster n times, and time each start')
  .option('--blank', 'failover, with --measure-start: remove the cluster folder before each start (a blank cluster)')
  .description("runs a chapter's lab (confirms: chapter 4's publisher confirms lab, on your broker; failover: chapter 8's leader kills, on the local cluster; shop: chapter 10's five services under orders with faults)")
  .action(run((name: string, o: import('./commands/lab.js').LabOptions) => commands.lab().then((m) => m.labCommand(name, o))));

program.command('mutation').argument('[ids...]').option('--concurrency <n>', 'mutants checked at once', '6').option('--record', 'write the table to MUTATION.md')
  .description('for authors: mutates each reference solution (StrykerJS) and runs its check against every mutant')
  .action(run((ids: string[], o: { concurrency?: string; record?: boolean }) => commands.mutation().then((m) => m.mutationCommand(ids, o))));

program.command('classroom').argument('<action>', 'create | join | leave | list | reset | destroy | dashboard | lock-guest').argument('[arg]', 'join: the join file; reset: the learner (s01)')
  .option('--students <n>', 'create: how many learners').option('--name <class>', 'the class name (create: random when not given)')
  .option('--out <dir>', 'the folder of class.json and the join files (default: .workbook/classes/<class>)')
  .option('--cluster', "create: on the local three-node cluster of chapter 8 instead of the runner's broker")
  .option('--port <n>', 'dashboard: the port of the web page (default 8090; 0 = any free port)')
  .option('--stuck-fails <n>', 'dashboard: a learner is stuck after this many failed checks of one exercise (default 5)')
  .option('--stuck-minutes <m>', 'dashboard: … or after failing one exercise for this many minutes (default 10)')
  .option('--delete-guest', 'lock-guest: delete the user "guest" (refused while the runner itself logs in as guest)')
  .description('classroom workshops: provision learners on a shared broker, watch them on a live dashboard (instructor); join or leave a class (learner)')
  .action(run((action: string, arg: string | undefined, o: import('./commands/classroom.js').ClassroomOptions) => commands.classroom().then((m) => m.classroomCommand(action, arg, o))));

program.command('web').option('--port <port>', 'the port on 127.0.0.1 (default 4173; 0: any free one)')
  .option('--vhost <name...>', 'also offer this vhost in the live topology list')
  .description('the web reader: chapters with your progress, and a live diagram of a demo vhost or of your last failed check')
  .action(run((o: import('./web/command.js').WebCommandOptions) => commands.web().then((m) => m.webCommand(o))));

const onInterrupt = () => {
  // Ctrl-C in a pager (the chapter text) is the pager's: the command goes on when it closes.
  if (pagerOpen()) return;
  process.off('SIGINT', onInterrupt); // a second Ctrl-C ends the process at once
  // Ctrl-C mid-check: remove the sandbox vhosts this process created, then exit. Imported
  // here so that commands without sandboxes do not load the management client at start.
  void import('./sandbox/sandbox.js')
    .then((m) => m.disposeAll())
    .finally(() => process.exit(130));
};
process.on('SIGINT', onInterrupt);

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
