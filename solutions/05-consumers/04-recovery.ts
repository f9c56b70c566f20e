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
  const connection = await amqp.connect(url, {
    recovery: {
      initialDelay: 200, // ms before the first retry, then doubled each time...
      maxDelay: 5000, // ...up to 5 s between retries, forever
      initialMaxRetries: 5, // but at startup, give up after 5 retries: a wrong URL should fail fast
      waitForConnect: false, // hand back the connection at once, so the listeners below miss nothing
      // Runs after every successful connect, the first one included. A new connection has
      // no channels, no prefetch and no consumers: everything the consumer needs is made here.
      async setup(model: ChannelModel) {
        const channel = await model.createChannel();
        channel.on('error', (err) => console.error(`channel error: ${err.message}`));
        await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        await channel.prefetch(10);
        await channel.consume(
          queue,
          (msg) => {
            if (msg === null) return; // the broker cancelled the consumer
            handle(msg.content.toString())
              .then(
                () => channel.ack(msg),
                (err) => {
                  console.error(`handling failed, requeued: ${err}`);
                  channel.reject(msg, true);
                },
              )
              // The connection may have been lost while handle() ran: this channel is closed, the
              // answer throws, and the broker has put the message back already. Nothing to crash for.
              .catch((err) => console.error(`message left unanswered: ${err.message}`));
          },
          { noAck: false },
        );
      },
    },
  });
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  connection.on('disconnect', (err) => console.warn(`connection lost (${err.message}), reconnecting`));
  await connection.waitForConnect();

  return {
    async stop() {
      await connection.close(); // closes the live connection and stops reconnecting
    },
  };
}

// On its own: npx tsx solutions/05-consumers/04-recovery.ts   (Ctrl-C to stop)
// Close its connection in the management UI (Connections, "Force Close") and watch it come back.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startResilientConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'invoices', async (text) => {
    console.log(`Invoice: ${text}`);
  });
  console.log('Consuming "invoices", reconnecting when the connection is lost. Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}
