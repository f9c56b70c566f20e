// Known-wrong 6.4: ignores the correlationId and hands each reply to the oldest waiting call.
import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';

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
      // Replies come back in order, don't they? Give this one to the oldest call still waiting.
      const [id, call] = [...waiting.entries()][0] ?? [];
      if (!call) return;
      waiting.delete(id!);
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
