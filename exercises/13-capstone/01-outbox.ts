// Exercise 13.1: the outbox trigger: every change to a customer leaves an event in the same transaction
// Text: chapters/13-capstone/README.md   Check: npm run check 13.1   Hint: npm run hint 13.1
//
// Write the triggers in 01-outbox.sql, next to this file. installOutbox(db) runs the
// tables (capstone/sql/schema.sql, given) and then your SQL. The trigger must:
//   1. on every INSERT or UPDATE of customers, insert one outbox row in the SAME transaction
//      (a rolled-back change leaves none): entity 'customer', entity_key = the customer's id
//      as text, version = its version, payload = the whole row as JSON (to_jsonb(NEW)),
//   2. then NOTIFY channel 'outbox' with the outbox id only (a wake-up, never the row): one
//      notification per outbox row, delivered when the transaction commits,
//   3. keep the given version trigger: every UPDATE bumps customers.version, and the event
//      carries the bumped version,
//   4. install again without harm: installOutbox() on a database that has it already
//      succeeds, and a change still makes exactly one event.
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import pg from 'pg';

/** The tables (given) and then the triggers of 01-outbox.sql (yours). */
export async function installOutbox(db: pg.ClientBase): Promise<void> {
  const schema = await readFile(new URL('../../capstone/sql/schema.sql', import.meta.url), 'utf8');
  const triggers = await readFile(new URL('./01-outbox.sql', import.meta.url), 'utf8');
  // TODO: write the trigger in 01-outbox.sql (this guard goes away with the TODO lines there)
  if (triggers.includes('TODO')) throw new Error('TODO: write the outbox trigger in exercises/13-capstone/01-outbox.sql (and delete its TODO lines)');
  await db.query(schema);
  await db.query(triggers);
}

// On its own: DATABASE_URL=postgres://… npx tsx exercises/13-capstone/01-outbox.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const db = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await db.connect();
  try {
    await installOutbox(db);
    console.log('Tables and triggers installed.');
  } finally {
    await db.end();
  }
}
