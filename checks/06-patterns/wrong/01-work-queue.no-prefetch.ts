// Known-wrong 6.1: no prefetch limit, so the broker deals the tasks out in turn.
import amqp from 'amqplib';

export interface Worker {
  stop(): Promise<void>;
}

export async function startWorker(url: string, queue: string, work: (task: string) => Promise<void>): Promise<Worker> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer (the queue was deleted)
      work(msg.content.toString()).then(
        () => channel.ack(msg), // done: the broker forgets the task and sends the next one
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
