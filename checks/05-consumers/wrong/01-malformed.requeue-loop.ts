// Known-wrong 5.1: the malformed message is nacked with the default requeue = true, so it loops.
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
      let value: unknown;
      try {
        value = JSON.parse(msg.content.toString());
      } catch (err) {
        console.error(`malformed message, trying again: ${(err as Error).message}`);
        channel.nack(msg); // requeue defaults to true: it comes straight back
        return;
      }
      handle(value).then(
        () => channel.ack(msg),
        (err) => {
          // The handler failed, maybe for a passing reason: requeue it for another try.
          // reject, not nack: from RabbitMQ 4.3 only a reject counts towards a quorum queue's delivery-limit.
          console.error(`handling failed, requeued: ${err}`);
          channel.reject(msg, true);
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
