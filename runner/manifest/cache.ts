// The validated manifest, kept in .workbook/build/manifest.json. Parsing the YAML and
// validating it with zod (and loading both libraries) cost more than the rest of a
// `npm run progress`, and the manifest rarely changes between two commands. The cache is
// keyed by a hash of the manifest's text and of the schema's source, so a change to either
// (defaults and transforms live in the schema) validates again.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BUILD_DIR, ROOT, writeAtomic } from '../build.mjs';
import type { ChapterData } from './schema.js';

const CACHE_FILE = path.join(BUILD_DIR, 'manifest.json');
const SCHEMA_SOURCE = path.join(ROOT, 'runner', 'manifest', 'schema.ts');

/** What the cache is valid for: this manifest text, validated by this schema. */
export function cacheKey(manifestText: string): string {
  let schema: Buffer | string;
  try {
    schema = readFileSync(SCHEMA_SOURCE);
  } catch {
    schema = String(Math.random()); // no source to compare with: never trust the cache
  }
  return createHash('sha1').update(schema).update('\0').update(manifestText).digest('hex');
}

/** The validated chapters stored under `key`, if the cache holds them. */
export function readCached(key: string): ChapterData[] | undefined {
  try {
    const cached = JSON.parse(readFileSync(CACHE_FILE, 'utf8')) as { key?: string; chapters?: ChapterData[] };
    return cached.key === key ? cached.chapters : undefined;
  } catch {
    return undefined;
  }
}

export function writeCached(key: string, chapters: ChapterData[]): void {
  try {
    writeAtomic(CACHE_FILE, JSON.stringify({ key, chapters }));
  } catch {
    // A cache that cannot be written (read-only checkout) only costs time.
  }
}
