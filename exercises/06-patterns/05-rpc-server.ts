// Exercise 6.5: an RPC server that answers each request where, and as, it was asked
// Text: chapters/06-patterns/README.md   Check: npm run check 6.5   Hint: npm run hint 6.5
//
// startRpcServer(url, queue, handler) must:
//   1. declare `queue` as a durable quorum queue and consume it with manual acks, at most 10
//      requests in progress at once (prefetch 10),
//   2. for each request, call handler(text); when it resolves, publish the reply to the request's
//      replyTo, with the request's correlationId, and only THEN ack the request,
//   3. ack a request that has no replyTo without calling the handler (nobody can get the answer),
//   4. when the handler rejects, reject the request without requeue (it would fail again; the
//      queue's dead-letter exchange, if it has one, gets it),
//   5. listen for 'error' on the connection, and skip the null message the consumer gets when the
//      broker cancels it (its queue was deleted),
//   6. return { stop }, where stop() cancels the consumer, then closes the channel and the connection.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface RpcServer {
  stop(): Promise<void>;
}

export async function startRpcServer(url: string, queue: string, handler: (request: string) => Promise<string>): Promise<RpcServer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.prefetch(10); // up to 10 requests in progress at once

  // TODO 1: consume `queue` with { noAck: false }. For each message (skip null), read
  //         { replyTo, correlationId } from msg.properties.
  // TODO 2: no replyTo? ack the request and stop there.
  // TODO 3: handler(msg.content.toString()).then(reply => …): send the reply to replyTo (the
  //         default exchange: channel.sendToQueue) with { correlationId }, THEN ack the request.
  // TODO 4: when the handler rejects: channel.reject(msg, false).
  throw new Error('TODO: consume the requests in exercises/06-patterns/05-rpc-server.ts');

  return {
    async stop() {
      // TODO 5: cancel the consumer, then close the channel, then the connection
    },
  };
}

// On its own: npx tsx exercises/06-patterns/05-rpc-server.ts   (Ctrl-C to stop), then in another
// terminal: npx tsx exercises/06-patterns/04-rpc-client.ts "hello"
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const server = await startRpcServer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'rpc', async (request) => request.toUpperCase());
  console.log('Answering requests on "rpc" (in upper case). Ctrl-C to stop.');
  process.once('SIGINT', () => void server.stop());
}
