// Known-wrong 6.5: returns early on a request without replyTo, without acking it.
import amqp from 'amqplib';

export interface RpcServer {
  stop(): Promise<void>;
}

export async function startRpcServer(url: string, queue: string, handler: (request: string) => Promise<string>): Promise<RpcServer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.prefetch(10); // up to 10 requests in progress at once

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      const { replyTo, correlationId } = msg.properties;
      if (!replyTo) {
        console.warn('a request without replyTo: nobody can receive the answer, ignoring it');
        return;
      }
      handler(msg.content.toString()).then(
        (reply) => {
          // Reply first, ack second: if we crash in between, the request comes back and is
          // answered twice, and the client ignores the reply it no longer waits for. The other
          // order would lose the request.
          channel.sendToQueue(replyTo, Buffer.from(reply), { correlationId });
          channel.ack(msg);
        },
        (err) => {
          console.error(`request failed, dropping it (the caller's timeout will report it): ${err}`);
          channel.nack(msg, false, false); // no requeue: it would fail again, forever
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
