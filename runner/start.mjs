// The runner's entry point (every npm script but the capstone's): brings the compiled
// tree up to date, then runs the compiled CLI. See runner/build.mjs for why.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildFile, ROOT, RUNNER_ONLY, syncBuild } from './build.mjs';

// These commands run no check, demo or lab, so only the runner's own files need to be current:
// walking checks/, exercises/, solutions/… as well would cost them a third of their time.
const RUNNER_ONLY_COMMANDS = new Set(['progress', 'hint', 'solution', 'reset', 'broker', 'doctor', 'classroom']);

syncBuild(RUNNER_ONLY_COMMANDS.has(process.argv[2] ?? '') ? RUNNER_ONLY : undefined);
await import(pathToFileURL(buildFile(path.join(ROOT, 'runner', 'cli.ts'))).href);
