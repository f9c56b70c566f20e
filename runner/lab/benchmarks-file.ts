// BENCHMARKS.md: what every recorder writes the same way. Labs and benches each own a section
// between their <!-- BEGIN … --> and <!-- END … --> markers (bench/run.ts keeps those sections
// when it rewrites the rest), and each says on which machine it measured.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import path from 'node:path';
import { ROOT } from '../paths.js';

export const BENCHMARKS_FILE = path.join(ROOT, 'BENCHMARKS.md');

/** "2 × AMD EPYC, 24 GiB RAM, Linux …, Node v20…": the machine a figure was measured on. */
export function machineDescription(): string {
  const cpu = cpus();
  return `${cpu.length} × ${cpu[0]?.model.trim()}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${release()}, Node ${process.version}`;
}

/** `file` with `section` (which holds both markers) in place of the one between `begin` and `end`, or added at the end. */
export function withSection(file: string, section: string, begin: string, end: string): string {
  const from = file.indexOf(begin);
  const to = file.indexOf(end);
  if (from >= 0 && to > from) return file.slice(0, from) + section + file.slice(to + end.length);
  return `${file.replace(/\n*$/, '')}\n\n${section}\n`;
}

/** Writes `section` into BENCHMARKS.md in place of its previous version; returns the file's path. */
export function recordSection(section: string, begin: string, end: string): string {
  const text = existsSync(BENCHMARKS_FILE) ? readFileSync(BENCHMARKS_FILE, 'utf8') : '# Benchmarks\n';
  writeFileSync(BENCHMARKS_FILE, withSection(text, section, begin, end));
  return BENCHMARKS_FILE;
}
