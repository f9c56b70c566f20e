// Chapter 1's live demo: one connection with two channels, a direct exchange bound to a
// quorum queue, and three messages published through the exchange: two match the
// binding, one does not and is dropped. The chapter text shows these regions.
import amqp from 'amqplib';

export async function demo(url: string, say: (line: string) => void): Promise<void> {
  // #region connect
  // One TCP connection for the whole program; it shows under this name in the UI's Connections tab.
  const connection = await amqp.connect(url, { clientProperties: { connection_name: 'chapter 1 demo' } });
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  // #endregion
  try {
    // #region channels
    // Two lightweight channels inside it: one to declare things, one to publish with confirms.
    const setup = await connection.createChannel();
    const publisher = await connection.createConfirmChannel();
    // #endregion
    say('opened 1 connection to the broker, and 2 channels inside it (one declares, one publishes)');

    // #region topology
    await setup.assertExchange('shop', 'direct', { durable: true });
    await setup.assertQueue('order-emails', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await setup.bindQueue('order-emails', 'shop', 'order.placed');
    // #endregion
    say('declared the direct exchange "shop", the quorum queue "order-emails", and a binding: shop --order.placed--> order-emails');

    // #region publish
    const placed = [
      { order: 1001, customer: 'Ana', total: 42.5 },
      { order: 1002, customer: 'Bruno', total: 17.9 },
    ];
    for (const event of placed) {
      publisher.publish('shop', 'order.placed', Buffer.from(JSON.stringify(event)), {
        persistent: true,
        contentType: 'application/json',
      });
    }
    // Nothing is bound for this routing key: the exchange has nowhere to put it.
    publisher.publish('shop', 'order.cancelled', Buffer.from(JSON.stringify({ order: 1001 })), {
      persistent: true,
      contentType: 'application/json',
    });
    await publisher.waitForConfirms();
    // #endregion
    say('published 3 messages to the exchange "shop": 2 with routing key "order.placed", 1 with "order.cancelled"');

    const { messageCount } = await setup.checkQueue('order-emails'); // exact, straight from the queue (ready messages; nobody consumes here)
    say(`the broker confirmed all 3, and "order-emails" holds ${messageCount}:`);
    say('the "order.cancelled" message matched no binding, so the exchange dropped it as unroutable');
    say('(a confirm means "the broker took care of it", not "a queue got it")');
  } finally {
    await connection.close();
  }
  say('closed the connection, and its channels with it; the two messages wait in "order-emails" for a consumer');
}
