// Structured logs for the bridge: one JSON object per line in a file (the original project's advice:
// keep a log file to find out later why something failed), and a readable line on the
// terminal. The relay and the receiver take a Logger, so checks can listen in.
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import pc from 'picocolors';

export type Level = 'info' | 'warn' | 'error';
export type Fields = Record<string, unknown>;

export interface Logger {
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
}

export interface LogLine {
  t: string;
  level: Level;
  component: string;
  msg: string;
  [field: string]: unknown;
}

export interface LoggerOptions {
  /** Append JSON lines here. Default: $BRIDGE_LOG_DIR/<component>.log when BRIDGE_LOG_DIR is set. */
  file?: string;
  /** Print readable lines on the terminal (default true). */
  terminal?: boolean;
}

/** "12:00:01.123 relay    published 500 event(s)  first=1 last=500" */
export function formatLine(line: LogLine): string {
  const { t, level, component, msg, ...fields } = line;
  const extra = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const color = level === 'error' ? pc.red : level === 'warn' ? pc.yellow : (s: string) => s;
  const tag = level === 'info' ? '' : `${level.toUpperCase()} `;
  return `${pc.dim(t.slice(11, 23))} ${pc.cyan(component.padEnd(8))} ${color(tag + msg)}${extra ? `  ${pc.dim(extra)}` : ''}`;
}

export function createLogger(component: string, opts: LoggerOptions = {}): Logger {
  const file = opts.file ?? (process.env.BRIDGE_LOG_DIR ? path.join(process.env.BRIDGE_LOG_DIR, `${component}.log`) : undefined);
  if (file) mkdirSync(path.dirname(file), { recursive: true });
  const terminal = opts.terminal ?? true;
  const write = (level: Level, msg: string, fields: Fields = {}) => {
    const line: LogLine = { t: new Date().toISOString(), level, component, msg, ...fields };
    if (file) {
      try {
        appendFileSync(file, JSON.stringify(line) + '\n');
      } catch {
        /* a full disk must not stop the bridge */
      }
    }
    if (terminal) (level === 'info' ? console.log : console.error)(formatLine(line));
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

/** A logger that keeps its lines in memory (checks read what the bridge said). */
export function memoryLogger(component: string, echo = false): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const write = (level: Level, msg: string, fields: Fields = {}) => {
    const line: LogLine = { t: new Date().toISOString(), level, component, msg, ...fields };
    lines.push(line);
    if (echo) console.log(formatLine(line));
  };
  return {
    lines,
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}
