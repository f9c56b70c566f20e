// Known-wrong 5.4: recovery re-declares the queue in setup, but the consumer is created once, outside setup.
import amqp, { type ChannelModel } from 'amqplib';

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
      // Runs after every successful connect: makes sure the queue exists.
      async setup(model: ChannelModel) {
        const channel = await model.createChannel();
        channel.on('error', (err) => console.error(`channel error: ${err.message}`));
        await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        // (the consumer is created once, below)
      },
    },
  });
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  connection.on('disconnect', (err) => console.warn(`connection lost (${err.message}), reconnecting`));
  connection.on('reconnect-scheduled', ({ attempt, delay }) => console.warn(`reconnect attempt ${attempt} in ${delay} ms`));
  connection.on('connect', () => console.log('connected, consuming'));
  await connection.waitForConnect();
  // Consume once, on a channel of the first connection.
  const channel = await connection.createChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.prefetch(10);
  await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      handle(msg.content.toString()).then(
        () => channel.ack(msg),
        (err) => {
          console.error(`handling failed, requeued: ${err}`);
          channel.reject(msg, true);
        },
      );
    },
    { noAck: false },
  );

  return {
    async stop() {
      await connection.close(); // closes the live connection and stops reconnecting
    },
  };
}
