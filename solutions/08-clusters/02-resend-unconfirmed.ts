// Exercise 8.2: a publisher that sends again whatever the broker has not confirmed
// Text: chapters/08-clusters/README.md   Check: npm run check 8.2   Hint: npm run hint 8.2
//
// startPublisher(connect, queue, options) must:
//   1. get a connection with connect() (it returns one to a node that is up), listen for its 'error',
//      open a confirm channel (listen for its 'error' too) and declare `queue`, a durable quorum queue,
//   2. publish(id, body): send body to `queue`, persistent, with messageId id, and keep it among the
//      unconfirmed messages until the broker confirms it; publish() resolves then, and only then,
//   3. when the broker refuses a message (a nack), keep it: send it again 100 ms later,
//   4. when a confirm has not come options.confirmTimeoutMs after its message was sent, take the
//      connection for dead (its node may hang): leave it without waiting for its close to finish, get
//      a new one with connect(), and send every unconfirmed message again on it,
//   5. when the connection is lost (its node died), or the new one breaks before it is ready, do the
//      same: a new connection from connect(), and every unconfirmed message sent again, in the order
//      they were first published,
//   6. close(): wait until every message published so far is confirmed, then close the connection,
//      and resolve once it is closed.
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { clusterUrls, connectInTurn } from '../../chapters/08-clusters/connect-in-turn.js';
import { pathToFileURL } from 'node:url';

export interface Publisher {
  publish(id: string, body: string): Promise<void>;
  close(): Promise<void>;
}

export interface PublisherOptions {
  confirmTimeoutMs: number;
}

interface Unconfirmed {
  body: Buffer;
  /** The connection it was last sent on, and when; none while it waits for a new connection. */
  sentOn?: Link;
  sentAt: number;
  confirmed: () => void;
  done: Promise<void>;
}

interface Link {
  connection: ChannelModel;
  channel: ConfirmChannel;
}

export async function startPublisher(connect: () => Promise<ChannelModel>, queue: string, options: PublisherOptions): Promise<Publisher> {
  const unconfirmed = new Map<string, Unconfirmed>(); // a Map keeps the order of publish()
  let link: Link | undefined;

  async function open(): Promise<void> {
    const connection = await connect();
    connection.on('error', (err) => console.error(`connection error: ${err.message}`));
    const channel = await connection.createConfirmChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const opened = { connection, channel };
    link = opened;
    connection.on('close', () => {
      if (link === opened) replace('connection lost');
    });
    for (const id of unconfirmed.keys()) send(id); // all that is not confirmed yet, oldest first
  }

  // Leaves the current connection (lost, or hanging) and opens a new one.
  function replace(why: string): void {
    const old = link;
    link = undefined;
    console.error(`${why}: opening a new connection`);
    old?.connection.close().catch(() => {}); // not awaited: a node that hangs never answers
    for (const message of unconfirmed.values()) message.sentOn = undefined;
    open().catch((err) => replace(`the new connection broke (${err.message})`));
  }

  function send(id: string): void {
    const message = unconfirmed.get(id)!;
    const current = link;
    if (!current) return; // between two connections: open() sends it once there is one
    message.sentOn = current;
    message.sentAt = Date.now();
    try {
      current.channel.sendToQueue(queue, message.body, { persistent: true, messageId: id }, (err) => {
        if (message.sentOn !== current) return; // an answer from a connection we left: sent again since
        if (err) {
          setTimeout(() => message.sentOn === current && send(id), 100); // a nack: the broker did not take it
          return;
        }
        unconfirmed.delete(id);
        message.confirmed();
      });
    } catch {
      // The channel closed under us: the connection's 'close' opens a new one, which sends it again.
    }
  }

  await open();

  // Every 100 ms until close(): a message sent on the current connection that waits too long for its confirm.
  const watch = setInterval(() => {
    const late = [...unconfirmed.values()].some((m) => m.sentOn && Date.now() - m.sentAt > options.confirmTimeoutMs);
    if (late) replace(`no confirm within ${options.confirmTimeoutMs} ms`);
  }, 100);

  return {
    publish(id, body) {
      let confirmed = () => {};
      const done = new Promise<void>((resolve) => (confirmed = resolve));
      unconfirmed.set(id, { body: Buffer.from(body), sentAt: 0, confirmed, done });
      send(id);
      return done;
    },
    async close() {
      await Promise.all([...unconfirmed.values()].map((m) => m.done));
      clearInterval(watch);
      const current = link;
      link = undefined; // its 'close' is ours: no new connection
      await current?.connection.close();
    },
  };
}

// On its own: RABBITMQ_URLS=amqp://localhost:5673,amqp://localhost:5674,amqp://localhost:5675 npx tsx solutions/08-clusters/02-resend-unconfirmed.ts
// It publishes a message a second; kill a node (npm run broker -- cluster status shows their pids) and watch it go on.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const connect = connectInTurn(clusterUrls()); // the next URL that accepts (8.1 does it properly)
  const publisher = await startPublisher(connect, 'payments', { confirmTimeoutMs: 5000 });
  let n = 0;
  const timer = setInterval(() => {
    const id = `payment-${++n}`;
    void publisher.publish(id, JSON.stringify({ id, amount: n })).then(() => console.log(`${id} confirmed`));
  }, 1000);
  console.log('Publishing a payment a second to "payments". Ctrl-C to stop.');
  process.once('SIGINT', () => {
    clearInterval(timer);
    void publisher.close();
  });
}
