// Known-wrong 6.2: a durable queue of its own per subscriber, left behind (and still filling up) after stop().
import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';

export interface Subscription {
  stop(): Promise<void>;
}

export async function subscribe(url: string, exchange: string, onEvent: (text: string) => void): Promise<Subscription> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'fanout', { durable: true });

  // A durable queue of its own, with a unique name.
  const { queue } = await channel.assertQueue(`${exchange}-${randomUUID()}`, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.bindQueue(queue, exchange, ''); // a fanout exchange ignores the key

  await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      onEvent(msg.content.toString());
    },
    // The queue dies with this connection, so a redelivery after a crash could never happen:
    // automatic acks cost nothing here.
    { noAck: true },
  );

  return {
    async stop() {
      await connection.close(); // the exclusive queue goes with it
    },
  };
}
