// Known-wrong 5.4: a plain amqp.connect() without recovery: once closed, the connection stays closed.
import amqp from 'amqplib';

export interface Consumer {
  stop(): Promise<void>;
}

export async function startResilientConsumer(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Consumer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  connection.on('close', () => console.warn('connection closed')); // noticed, but nothing reconnects
  const channel = await connection.createChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
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
      await connection.close();
    },
  };
}
