// Check 2.3: sendJson() publishes a labelled, UTF-8 JSON body; readJson() parses good
// messages and refuses unlabelled or malformed ones with an Error (never a silent guess).
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/02-hello-world/03-json.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'orders';
  const order = { id: Math.floor(Math.random() * 1e6), customer: 'Zoë', city: 'São Paulo', items: [{ sku: 'café', qty: 2 }] };

  await t.call(`sendJson(url, "${queue}", order)`, () => t.target.sendJson(t.url, queue, order));
  await t.expectConnectionsClosed('sendJson()');
  const [m] = await t.takeMessages(queue, 1);
  if (!m) t.fail({ summary: `sendJson() returned, but "${queue}" is empty.`, fix: 'Declare the queue, publish, and await waitForConfirms() before closing.', link: t.ui('queues', queue) });

  const body = m.content.toString('utf8');
  if (m.properties.contentType !== 'application/json') {
    t.fail({
      summary: 'The message does not say it is JSON: its content type is not application/json.',
      expected: "contentType: 'application/json'",
      saw: `contentType: ${m.properties.contentType ?? 'not set'}`,
      why: 'A consumer, the management UI and tools like Shovel read the content type to know how to decode the body. Without it, the body is just bytes.',
      fix: "Publish with { contentType: 'application/json' }.",
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    t.fail({
      summary: 'The message body is not valid JSON.',
      expected: JSON.stringify(order),
      saw: body.slice(0, 120),
      why: body.startsWith('[object') ? 'Buffer.from(String(value)) turns an object into the text "[object Object]".' : 'The consumer cannot parse it.',
      fix: "Publish Buffer.from(JSON.stringify(value), 'utf8').",
    });
  }
  if (JSON.stringify(parsed) !== JSON.stringify(order)) {
    t.fail({
      summary: 'The JSON in the message is not the value that was sent.',
      expected: JSON.stringify(order),
      saw: body.slice(0, 200),
      why: 'Non-ASCII text (São, Zoë, café) is where encodings go wrong: the bytes must be UTF-8.',
      fix: "Buffer.from(JSON.stringify(value), 'utf8')",
    });
  }

  // readJson(): a good message, then the two ways a message can be wrong.
  const good = { content: Buffer.from(JSON.stringify(order), 'utf8'), properties: { contentType: 'application/json' } };
  const value = await t.call('readJson(a valid JSON message)', () => t.target.readJson(good));
  if (JSON.stringify(value) !== JSON.stringify(order)) {
    t.fail({ summary: 'readJson() did not return the parsed body of a valid message.', expected: JSON.stringify(order), saw: JSON.stringify(value), fix: "return JSON.parse(message.content.toString('utf8'))" });
  }
  const refuses = async (label: string, message: Exercise.ReceivedMessage) =>
    t.call(label, () => {
      try {
        t.target.readJson(message);
        return false;
      } catch (err) {
        return err instanceof Error;
      }
    });
  if (!(await refuses('readJson(a text/plain message)', { content: Buffer.from('{"looks":"like json"}'), properties: { contentType: 'text/plain' } }))) {
    t.fail({
      summary: 'readJson() accepted a message labelled text/plain.',
      expected: 'an Error, because the content type is not application/json',
      saw: 'a value',
      why: 'Guessing is how a consumer ends up processing something it does not understand. The label is the contract.',
      fix: "Throw an Error when message.properties.contentType !== 'application/json'.",
    });
  }
  if (!(await refuses('readJson(a message with a broken JSON body)', { content: Buffer.from('{"id": 1,'), properties: { contentType: 'application/json' } }))) {
    t.fail({
      summary: 'readJson() did not throw an Error for a body that is not valid JSON.',
      expected: 'an Error',
      saw: 'no Error (or something thrown that is not an Error)',
      fix: 'Let JSON.parse throw, or wrap it and throw new Error(…) with a clear message.',
    });
  }
});
