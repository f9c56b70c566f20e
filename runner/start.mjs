// The runner's entry point (every npm script but the capstone's): brings the compiled
// tree up to date, then runs the compiled CLI. See runner/build.mjs for why.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildFile, ROOT, syncBuild } from './build.mjs';

syncBuild();
await import(pathToFileURL(buildFile(path.join(ROOT, 'runner', 'cli.ts'))).href);
