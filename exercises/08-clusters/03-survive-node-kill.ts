// Exercise 8.3: a consumer that survives the death of its node, and handles each message once
// Text: chapters/08-clusters/README.md   Check: npm run check 8.3   Hint: npm run hint 8.3
//
// startShippingConsumer(connect, queue, handle) must:
//   1. get a connection with connect() (it returns one to a node that is up), listen for its 'error',
//      create a channel, declare `queue` (a durable quorum queue), set a prefetch of 10 and consume
//      with manual acks, skipping the null message that says the broker cancelled the consumer;
//      all of it again on every new connection,
//   2. when the connection is lost (its node died), or the new one breaks before it consumes, get a
//      new one with connect() at once and consume again: what it had not acked comes back, redelivered,
//   3. call handle(id, body) at most once per messageId (msg.properties.messageId): remember the ids
//      whose handle() resolved, and ack a message whose id is among them without calling handle()
//      again (a redelivery whose ack was lost, or a duplicate the publisher sent twice),
//   4. ack a message once its handle() resolves, and remember its id then; when handle() rejects,
//      reject it with requeue (channel.reject(msg, true)) and do not remember it; an answer on the
//      channel of a connection that has died throws: catch it (the message comes back anyway),
//   5. return { stop }: stop() closes the connection, and no new one is opened after it.
import type { ChannelModel } from 'amqplib';
import { clusterUrls, connectInTurn } from '../../chapters/08-clusters/connect-in-turn.js';
import { pathToFileURL } from 'node:url';

export interface Consumer {
  stop(): Promise<void>;
}

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function startShippingConsumer(connect: () => Promise<ChannelModel>, queue: string, handle: (id: string, body: string) => Promise<void>): Promise<Consumer> {
  // The ids already handled. In a real service: a table, written in the same transaction as the
  // work itself (chapter 7), so that it survives a restart of the consumer too.
  const handled = new Set<string>();
  let current: ChannelModel | undefined;
  let stopped = false;

  async function open(): Promise<void> {
    // TODO 1: const connection = await connect(); listen for its 'error'; createChannel() (and its
    //         'error'), assertQueue(queue, QUORUM), prefetch(10).
    // TODO 3: consume with { noAck: false }. For each message (skip null): id = msg.properties.messageId.
    //         Already in `handled`? ack it and return, without calling handle().
    // TODO 4: otherwise handle(id, body): when it resolves, add the id to `handled`, then ack;
    //         when it rejects, channel.reject(msg, true). Wrap each ack/reject in try/catch: on a
    //         channel whose connection died, they throw.
    // TODO 2: keep the connection in `current`; on its 'close', unless stopped, reopen().
    throw new Error('TODO: open() in exercises/08-clusters/03-survive-node-kill.ts');
  }

  // A new connection, and another one when that breaks too.
  function reopen(why: string): void {
    console.error(`${why}: getting a new connection`);
    // TODO 2: open(), and when it fails, reopen() again.
  }

  await open();

  return {
    async stop() {
      // TODO 5: note that you stop (no reopen() after this), then close the current connection.
    },
  };
}

// On its own: RABBITMQ_URLS=amqp://localhost:5673,amqp://localhost:5674,amqp://localhost:5675 npx tsx exercises/08-clusters/03-survive-node-kill.ts
// Publish to "shipments" with a messageId (the management UI's Publish message, under Properties:
// message_id); kill the node it is on, and watch it move and skip what it has done.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const connect = connectInTurn(clusterUrls()); // the next URL that accepts (8.1 does it properly)
  const consumer = await startShippingConsumer(connect, 'shipments', async (id, body) => {
    console.log(`Shipping ${id}: ${body}`);
  });
  console.log('Consuming "shipments". Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}
