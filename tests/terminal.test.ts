// What the terminal shows: verdicts wrapped to its width, chapters that name the real broker
// addresses and state folder, code blocks' languages, verdicts in id order.
import path from 'node:path';
import { stripVTControlCharacters as plain } from 'node:util';
import { describe, expect, it } from 'vitest';
import { formatVerdict, indented } from '../runner/check/report.js';
import type { Verdict } from '../runner/check/verdict.js';
import { fenceLanguage } from '../runner/chapter/highlight.js';
import { knownAddresses, localize } from '../runner/chapter/addresses.js';
import { inOrder } from '../runner/commands/check.js';
import { ROOT } from '../runner/paths.js';

const verdict: Verdict = {
  id: '2.2',
  title: 'Receive',
  target: 'exercise',
  targetPath: 'exercises/02-hello-world/02-receive.ts',
  status: 'failed',
  durationMs: 1200,
  finding: {
    summary: 'The message did not come back after the checker cut your connection while your handler was still working on it.',
    why: 'An ack sent before the work is done tells the broker it may forget the message; when your process dies halfway, nobody has it any more.',
    fix: 'Ack after the work, not before. `npm run hint` gives a hint.',
    link: 'http://localhost:43453/#/queues/wb-1234-5678-1-2.2-exercise/a-queue-with-a-rather-long-name',
  },
  steps: ['12:00:01.120 declared the queue "hello", published one message to it and started your consumer'],
  notes: [],
};

describe('verdicts on a terminal', () => {
  it('wrap to its width with a hanging indent, never splitting a word or a URL', () => {
    const lines = plain(formatVerdict(verdict, { width: 60 })).split('\n');
    const link = verdict.finding!.link!;
    for (const line of lines) if (!line.includes(link)) expect(line.length).toBeLessThanOrEqual(60);
    expect(lines).toContain(`    ${link}`);
    const why = lines.findIndex((l) => l.startsWith('  Why: An ack'));
    expect(lines[why + 1]).toMatch(/^ {4}\S/);
    // Every word of the text is still there, whole.
    expect(lines.join(' ').replace(/\s+/g, ' ')).toContain('when your process dies halfway, nobody has it any more.');
  });

  it('stay whole lines without a width (a pipe or a file)', () => {
    expect(indented(2, 'a '.repeat(100))).toBe('  ' + 'a '.repeat(100));
  });

  it('name the key instead of the command in watch mode', () => {
    expect(plain(formatVerdict(verdict, { watch: true }))).toMatch(/Fix: Ack after the work, not before\. Press h for a hint\./);
    expect(plain(formatVerdict(verdict))).toMatch(/`npm run hint` gives a hint/);
  });

  it('print in id order, each as soon as those before it are in', () => {
    const shown: string[] = [];
    const print = inOrder(['2.1', '2.2', '2.3'], (v) => shown.push(v.id));
    print({ ...verdict, id: '2.3' });
    expect(shown).toEqual([]);
    print({ ...verdict, id: '2.1' });
    expect(shown).toEqual(['2.1']);
    print({ ...verdict, id: '2.2' });
    expect(shown).toEqual(['2.1', '2.2', '2.3']);
  });
});

describe('chapter text', () => {
  it('takes a fenced block\'s language from its info string', () => {
    expect(fenceLanguage('ts file=demo.ts region=connect')).toBe('ts');
    expect(fenceLanguage(undefined)).toBe('');
  });

  it('shows the real broker addresses and state folder, not the defaults', () => {
    const markdown = 'UI: http://localhost:15672, API `curl localhost:15672/api`, AMQP `amqp://localhost` and `amqp://guest:guest@localhost:5672/shop`; logs in `.workbook/capstone/`.';
    const addresses = knownAddresses({ RABBITMQ_URL: 'amqp://guest:guest@localhost:45127', RABBITMQ_MANAGEMENT_URL: 'http://localhost:43453' });
    expect(addresses).toEqual({ amqp: 'localhost:45127', management: 'http://localhost:43453' });
    expect(localize(markdown, addresses, '/tmp/elsewhere')).toBe(
      `UI: http://localhost:43453, API \`curl localhost:43453/api\`, AMQP \`amqp://localhost:45127\` and \`amqp://guest:guest@localhost:45127/shop\`; logs in \`${path.relative(process.cwd(), '/tmp/elsewhere')}/capstone/\`.`,
    );
    // The defaults: nothing changes.
    expect(localize(markdown, undefined, path.join(ROOT, '.workbook'))).toBe(markdown);
  });
});
