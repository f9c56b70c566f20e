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
  // A plain channel: the reply is the confirmation, and the timeout covers every way a request can get lost.
  const channel = await connection.createChannel();
  const waiting = new Map<string, Waiting>(); // correlationId -> the call waiting for it

  // Direct Reply-to: replies come straight to this channel. The broker insists on no-ack mode, and
  // refuses a request with replyTo amq.rabbitmq.reply-to on a channel that is not consuming it yet.
  await channel.consume(
    REPLY_TO,
    (msg) => {
      if (msg === null) return;
      const id = msg.properties.correlationId;
      const call = waiting.get(id);
      if (!call) return; // a late reply to a call that timed out (or not ours): nobody is waiting, drop it
      waiting.delete(id);
      clearTimeout(call.timer);
      call.resolve(msg.content.toString());
    },
    { noAck: true },
  );

  return {
    call(queue, request, timeoutMs = 5000) {
      const correlationId = randomUUID();
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(correlationId); // from now on, its reply is an unknown id
          reject(new Error(`no reply from "${queue}" within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(correlationId, { resolve, reject, timer });
        try {
          channel.sendToQueue(queue, Buffer.from(request), {
            correlationId,
            replyTo: REPLY_TO,
            expiration: String(timeoutMs), // nobody will wait for the answer after that: let the broker drop it
          });
        } catch (err) {
          clearTimeout(timer);
          waiting.delete(correlationId);
          reject(err as Error); // e.g. the channel is closed
        }
      });
    },
    async close() {
      for (const call of waiting.values()) {
        clearTimeout(call.timer);
        call.reject(new Error('RPC client closed'));
      }
      waiting.clear();
      await connection.close();
    },
  };
}

// On its own: npx tsx solutions/06-patterns/04-rpc-client.ts "hello"   (needs a server on "rpc": see 6.5)
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
