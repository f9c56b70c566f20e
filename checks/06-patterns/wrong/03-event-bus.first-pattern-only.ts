// Known-wrong 6.3: binds the queue with the first pattern only.
import amqp from 'amqplib';

export interface ListenerSpec {
  exchange: string;
  queue: string;
  patterns: string[];
}

export interface Listener {
  stop(): Promise<void>;
}

export async function startListener(url: string, spec: ListenerSpec, onEvent: (routingKey: string, text: string) => Promise<void>): Promise<Listener> {
  const { exchange, queue, patterns } = spec;
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });

  // The service's own named queue outlives the service: what is published while it is down
  // (a deploy, a crash) waits here for it.
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.bindQueue(queue, exchange, patterns[0]!);

  await channel.prefetch(10);
  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      onEvent(msg.fields.routingKey, msg.content.toString()).then(
        () => channel.ack(msg),
        (err) => {
          console.error(`handling ${msg.fields.routingKey} failed, it goes back to the queue: ${err}`);
          channel.nack(msg);
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
