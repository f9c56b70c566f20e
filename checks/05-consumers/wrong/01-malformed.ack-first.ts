// Known-wrong 5.1: acks every message on arrival, before parsing or handling it.
import amqp from 'amqplib';

export interface Consumer {
  stop(): Promise<void>;
}

export async function startJsonConsumer(url: string, queue: string, handle: (value: unknown) => Promise<void>): Promise<Consumer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.prefetch(10);

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer
      channel.ack(msg); // "got it": acked on arrival, before anything was done with it
      let value: unknown;
      try {
        value = JSON.parse(msg.content.toString());
      } catch (err) {
        console.error(`malformed message skipped: ${(err as Error).message}`);
        return;
      }
      handle(value).catch((err) => console.error(`handling failed: ${err}`));
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
