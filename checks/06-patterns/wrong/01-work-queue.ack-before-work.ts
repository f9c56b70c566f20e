// Known-wrong 6.1: acks each task as soon as it arrives, before the work is done.
import amqp from 'amqplib';

export interface Worker {
  stop(): Promise<void>;
}

export async function startWorker(url: string, queue: string, work: (task: string) => Promise<void>): Promise<Worker> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });

  // Fair dispatch: the broker sends this worker its next task only once it has acked the last one,
  // so a busy worker is skipped and an idle one gets the work. The limit applies to consumers
  // started after it: it must come before consume().
  await channel.prefetch(1);

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer (the queue was deleted)
      channel.ack(msg); // too early: the broker sends the next task at once
      work(msg.content.toString()).then(
        () => undefined,
        (err) => {
          console.error(`task failed, it goes back to the queue: ${err}`);
          channel.nack(msg); // requeued; a quorum queue gives up after its delivery limit
        },
      );
    },
    { noAck: false },
  );

  return {
    async stop() {
      await channel.cancel(consumerTag);
      await connection.close();
    },
  };
}
