// Known-wrong 5.2: prefetch 1 hard-coded (as in the tutorials) instead of the prefetch argument.
import amqp from 'amqplib';

export interface Workers {
  stop(): Promise<void>;
}

export async function startWorkers(url: string, queue: string, prefetch: number, handle: (text: string) => Promise<void>): Promise<Workers> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  // The broker keeps at most `prefetch` unacknowledged messages on this consumer. amqplib calls
  // the callback for each delivery at once, without waiting: the prefetch IS the concurrency limit.
  await channel.prefetch(1); // fair dispatch, as in the tutorial

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      // Not awaited, on purpose: the next delivery must not wait for this one.
      handle(msg.content.toString()).then(
        () => channel.ack(msg), // frees a slot: the broker sends the next message
        (err) => {
          console.error(`handling failed, requeued: ${err}`);
          channel.reject(msg, true);
        },
      );
    },
    { noAck: false }, // with noAck: true the prefetch would be ignored
  );

  return {
    async stop() {
      await channel.cancel(consumerTag);
      await connection.close();
    },
  };
}
