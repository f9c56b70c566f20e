// Exercise 5.4: a consumer that comes back after its connection is lost
// Text: chapters/05-consumers/README.md   Check: npm run check 5.4   Hint: npm run hint 5.4
//
// startResilientConsumer(url, queue, handle) must:
//   1. connect with amqplib's built-in recovery (amqplib 1.1+): amqp.connect(url, { recovery: { … } }),
//      retrying quickly (initialDelay of a few hundred ms): a lost connection is open again within
//      a second or so, and a failed attempt (a setup that failed, say) is tried again,
//   2. in recovery.setup, which runs after EVERY successful connect: create the channel (with an
//      'error' listener), declare `queue` (durable quorum queue), set a prefetch of 10 and consume with
//      manual acks, acking after handle() resolves and requeueing (reject with requeue) when it rejects,
//   3. listen for 'error' on the connection: a network failure emits one, and an 'error' event
//      nobody listens to crashes the process (and recovery with it),
//   4. survive a handler still running when the connection is lost: its message comes back on the new
//      connection, and answering it on the dead channel (which throws) must not crash the process,
//   5. return { stop }, where stop() closes the connection (which also ends the recovery).
import amqp, { type ChannelModel } from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Consumer {
  stop(): Promise<void>;
}

export async function startResilientConsumer(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Consumer> {
  // TODO 1: connect with recovery: amqp.connect(url, { recovery: { initialDelay, maxDelay, waitForConnect: false,
  //         async setup(model: ChannelModel) { … } } }).
  // TODO 2: in setup, which runs after EVERY (re)connect: model.createChannel(), listen for its 'error',
  //         assertQueue (durable quorum), prefetch(10), and consume with { noAck: false }, calling
  //         handle(msg.content.toString()) and acking when it resolves (reject with requeue when it rejects).
  //         Add a .catch() after: an ack on a channel that died meanwhile throws.
  // TODO 3: connection.on('error', …): without it, a network failure crashes the process.
  // TODO 4: await connection.waitForConnect() before returning.
  throw new Error('TODO: connect with recovery in exercises/05-consumers/04-recovery.ts');

  return {
    async stop() {
      // TODO 5: close the connection: that also stops the recovery
    },
  };
}

// On its own: npx tsx exercises/05-consumers/04-recovery.ts   (Ctrl-C to stop)
// Close its connection in the management UI (Connections, "Force Close") and watch it come back.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startResilientConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'invoices', async (text) => {
    console.log(`Invoice: ${text}`);
  });
  console.log('Consuming "invoices", reconnecting when the connection is lost. Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}
