// Known-wrong 5.2: chains every handler behind the previous one, so only one runs at a time.
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

  let previous: Promise<void> = Promise.resolve(); // one after another, "to be safe"
  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      previous = previous.then(() => handle(msg.content.toString())).then(
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
