// Known-wrong 2.2: acks the message before the work is done.
import amqp from 'amqplib';

export interface Receiver {
  stop(): Promise<void>;
}

export async function startReceiver(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Receiver> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.prefetch(10); // at most 10 unacknowledged messages in our hands at once

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer, e.g. the queue was deleted
      channel.ack(msg); // too early: the work has not started
      handle(msg.content.toString()).then(
        () => undefined,
        (err) => {
          console.error(`handling failed, the message goes back to the queue: ${err}`);
          channel.nack(msg);
        },
      );
    },
    { noAck: false },
  );

  return {
    async stop() {
      await channel.cancel(consumerTag); // no new deliveries
      await channel.close(); // flushes our last acks: closing only the connection can drop them
      await connection.close();
    },
  };
}
