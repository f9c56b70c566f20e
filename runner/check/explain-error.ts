// Turns the errors a learner's code typically throws into a sentence and a fix.
// Matches amqplib's messages (e.g. 'Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) ...').
import type { Finding } from './verdict.js';
import { learnerLocation, mapCompiledPaths } from './source-map.js';

interface Explanation {
  why: string;
  fix: string;
}

const RULES: { test: RegExp; explain: (m: RegExpMatchArray) => Explanation }[] = [
  {
    test: /^TODO/i,
    explain: () => ({
      why: 'This is still the starter: the TODO has not been done yet.',
      fix: 'Open the file, read the TODO comments, and replace the `throw` with your code. `npm run hint` gives a hint.',
    }),
  },
  {
    test: /ECONNREFUSED/,
    explain: () => ({
      why: 'Nothing accepted the connection: the broker is not running on that host and port, or the URL is wrong.',
      fix: 'Connect to the URL you were given (the `url` argument), not a hard-coded one. `npm run broker -- status` shows where the broker is.',
    }),
  },
  {
    test: /ACCESS[_-]REFUSED|403/,
    explain: () => ({
      why: 'The broker refused the login. The guest user may only connect from localhost, and a user needs permissions on the vhost.',
      fix: 'Use the `url` argument as given: it carries the right user, password and vhost.',
    }),
  },
  {
    test: /PRECONDITION[_-]FAILED.*inequivalent arg '([^']+)'/,
    explain: (m) => ({
      why: `The queue or exchange already exists with a different '${m[1]}'. Declaring it again with other settings is refused, and the channel is closed.`,
      fix: 'Declare it with exactly the same options everywhere (or delete it first, e.g. `npm run reset <id>`).',
    }),
  },
  {
    test: /PRECONDITION[_-]FAILED.*unknown delivery tag/,
    explain: () => ({
      why: 'A message was acknowledged twice, or on another channel than the one it was delivered on. The broker closes the channel.',
      fix: 'Ack (or nack) each message exactly once, on the channel that delivered it.',
    }),
  },
  {
    test: /NOT[_-]FOUND.*no queue '([^']+)'/,
    explain: (m) => ({
      why: `The queue '${m[1]}' does not exist (yet) in this vhost.`,
      fix: 'Declare the queue with assertQueue before you consume from it or publish to it.',
    }),
  },
  {
    test: /NOT[_-]FOUND.*no exchange '([^']+)'/,
    explain: (m) => ({
      why: `The exchange '${m[1]}' does not exist in this vhost.`,
      fix: 'Declare the exchange with assertExchange before you publish to it or bind to it.',
    }),
  },
  {
    test: /Channel closed|IllegalOperationError/,
    explain: () => ({
      why: 'The code used a channel after it was closed, often because an earlier error (a failed declare, a double ack) closed it.',
      fix: "Listen for the channel's 'error' event to see the first error, and do not use a channel after close().",
    }),
  },
];

/** A finding for an error thrown by the code under check while doing `what`. */
export function explainError(what: string, err: unknown): Finding {
  const message = mapCompiledPaths(err instanceof Error ? err.message : String(err));
  const at = learnerLocation(err);
  for (const rule of RULES) {
    const m = message.match(rule.test);
    if (m) return { summary: `${what} threw an error: ${message}`, ...rule.explain(m), at };
  }
  return {
    summary: `${what} threw an error: ${message}`,
    why: 'The check called your code and it failed before the broker saw what was expected.',
    fix: at
      ? `Read the error message above and look at ${at}; run the file on its own (npx tsx <file>) to see the full stack trace.`
      : 'Read the error message above; run the file on its own (npx tsx <file>) to see the full stack trace.',
    at,
  };
}
