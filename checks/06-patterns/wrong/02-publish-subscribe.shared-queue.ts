// Known-wrong 6.2: every subscriber consumes from one named queue, so they compete for the events.
import amqp from 'amqplib';

export interface Subscription {
  stop(): Promise<void>;
}

export async function subscribe(url: string, exchange: string, onEvent: (text: string) => void): Promise<Subscription> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'fanout', { durable: true });

  // One durable queue for the subscribers of this exchange.
  const { queue } = await channel.assertQueue(`${exchange}-subscribers`, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
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
