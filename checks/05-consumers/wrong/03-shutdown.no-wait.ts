// Known-wrong 5.3: shutdown() cancels and closes at once, without waiting for the running handlers (2.2's stop()).
import amqp from 'amqplib';

export interface Service {
  shutdown(): Promise<void>;
}

export async function start(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Service> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.prefetch(5);

  const inFlight = new Set<Promise<void>>(); // the work that has started and not yet been acked
  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      const work: Promise<void> = handle(msg.content.toString())
        .then(
          () => channel.ack(msg),
          (err) => {
            console.error(`handling failed, requeued: ${err}`);
            channel.reject(msg, true);
          },
        )
        .finally(() => inFlight.delete(work));
      inFlight.add(work);
    },
    { noAck: false },
  );

  return {
    async shutdown() {
      // 1. No new deliveries. When cancel() resolves, every message the broker sent before
      //    the cancel has reached the callback above, so `inFlight` is complete.
      await channel.cancel(consumerTag);
      // 3. Close the channel first: an ack has no reply, but the channel's close does, and it comes
      //    after the broker has processed every ack sent before it. connection.close() alone can
      //    drop acks still on their way, and those messages would come back.
      await channel.close();
      await connection.close();
    },
  };
}
