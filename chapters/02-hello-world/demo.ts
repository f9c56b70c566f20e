// Chapter 2's live demo: a producer and a consumer on one quorum queue, with
// publisher confirms and manual acks. The chapter text shows these regions.
import amqp from 'amqplib';

export async function demo(url: string, say: (line: string) => void): Promise<void> {
  await send(url, say);
  await receive(url, say);
  await leaveSomethingToLookAt(url, say);
}

// #region send
async function send(url: string, say: (line: string) => void) {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue('hello', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (const text of ['Hello', 'Olá', 'Bonjour']) {
      channel.sendToQueue('hello', Buffer.from(text), { persistent: true, contentType: 'text/plain' });
    }
    await channel.waitForConfirms(); // the broker now has all three
    say('published 3 messages to "hello" and the broker confirmed them');
  } finally {
    await connection.close();
  }
}
// #endregion

// #region receive
async function receive(url: string, say: (line: string) => void) {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue('hello', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.prefetch(10);

    let handled = 0;
    const allHandled = new Promise<void>((resolve) => {
      void channel.consume('hello', (msg) => {
        if (msg === null) return;
        say(`received "${msg.content.toString()}" (delivery tag ${msg.fields.deliveryTag}); acking it`);
        channel.ack(msg); // done with it: the broker may now forget it
        if (++handled === 3) resolve();
      });
    });
    await allHandled;
    await channel.close(); // flushes the last acks before the connection goes
  } finally {
    await connection.close();
  }
}
// #endregion

async function leaveSomethingToLookAt(url: string, say: (line: string) => void) {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue('waiting-room', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const order = { id: 42, customer: 'Ana', city: 'São Paulo' };
    channel.sendToQueue('waiting-room', Buffer.from(JSON.stringify(order)), {
      persistent: true,
      contentType: 'application/json',
    });
    await channel.waitForConfirms();
    say('left one JSON message in "waiting-room": open the queue in the UI and use "Get messages" to read it');
  } finally {
    await connection.close();
  }
}
