// Known-wrong 6.2: declares its queue but never binds it to the exchange.
import amqp from 'amqplib';

export interface Subscription {
  stop(): Promise<void>;
}

export async function subscribe(url: string, exchange: string, onEvent: (text: string) => void): Promise<Subscription> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'fanout', { durable: true });

  // '' asks the broker to name the queue (amq.gen-…); exclusive: only this connection may use it,
  // and the broker deletes it when the connection closes. Classic on purpose: quorum queues can
  // be neither exclusive nor server-named.
  const { queue } = await channel.assertQueue('', { exclusive: true });

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
