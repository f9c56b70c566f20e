// Known-wrong 5.2: consumes with noAck: true, so the broker ignores the prefetch.
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
  await channel.prefetch(prefetch);

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      // Not awaited, on purpose: the next delivery must not wait for this one.
      handle(msg.content.toString()).catch((err) => console.error(`handling failed: ${err}`));
    },
    { noAck: true }, // no acks to send: simpler, and the prefetch is silently ignored
  );

  return {
    async stop() {
      await channel.cancel(consumerTag);
      await connection.close();
    },
  };
}
