// Exercise 6.4: an RPC client with Direct Reply-to, correlation ids and a timeout
// Text: chapters/06-patterns/README.md   Check: npm run check 6.4   Hint: npm run hint 6.4
//
// createRpcClient(url) must open one connection and one channel, and return { call, close }:
//   1. before any request goes out, consume the pseudo-queue "amq.rabbitmq.reply-to" on that
//      channel, with { noAck: true } (Direct Reply-to: no reply queue to declare),
//   2. call(queue, request, timeoutMs) publishes `request` to `queue` on that same channel, with a
//      fresh correlationId, replyTo "amq.rabbitmq.reply-to" and an expiration of timeoutMs (so
//      that the broker drops a request nobody picked up in time), and resolves with the text of
//      the reply that carries the same correlationId, whatever order replies come back in,
//   3. call() rejects with an Error when no reply came within timeoutMs; a reply that arrives
//      later (or any reply with an unknown correlationId, or none) is ignored,
//   4. listen for 'error' on the connection; once the connection is lost, call() rejects at once
//      (the channel refuses to publish) instead of waiting for its timeout,
//   5. close() rejects the calls still waiting, with an Error, and closes the connection.
import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

export interface RpcClient {
  call(queue: string, request: string, timeoutMs?: number): Promise<string>;
  close(): Promise<void>;
}

const REPLY_TO = 'amq.rabbitmq.reply-to';

interface Waiting {
  resolve: (reply: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export async function createRpcClient(url: string): Promise<RpcClient> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  const waiting = new Map<string, Waiting>(); // correlationId -> the call waiting for it

  // TODO 1: consume REPLY_TO on `channel` with { noAck: true }. For each reply (skip null), look up
  //         waiting.get(msg.properties.correlationId). Nobody waiting? Ignore the reply. Otherwise
  //         delete the entry, clear its timer, and resolve it with msg.content.toString().
  throw new Error('TODO: consume the replies in exercises/06-patterns/04-rpc-client.ts');

  return {
    call(queue, request, timeoutMs = 5000) {
      const correlationId = randomUUID();
      return new Promise<string>((resolve, reject) => {
        // TODO 2: start a timer that, after timeoutMs, deletes the entry and rejects with an Error
        // TODO 3: remember { resolve, reject, timer } in `waiting` under correlationId
        // TODO 4: channel.sendToQueue(queue, Buffer.from(request), { correlationId, replyTo: REPLY_TO,
        //         expiration: String(timeoutMs) }); if it throws (the channel is closed), clean up and reject
        reject(new Error('TODO: call() in exercises/06-patterns/04-rpc-client.ts'));
      });
    },
    async close() {
      // TODO 5: reject every call still waiting (and clear its timer), then close the connection
    },
  };
}

// On its own: npx tsx exercises/06-patterns/04-rpc-client.ts "hello"   (needs a server on "rpc": see 6.5)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const client = await createRpcClient(process.env.RABBITMQ_URL ?? 'amqp://localhost');
  try {
    console.log(`reply: ${await client.call('rpc', process.argv[2] ?? 'hello', 3000)}`);
  } catch (err) {
    console.error(`no luck: ${(err as Error).message}`);
  } finally {
    await client.close();
  }
}
