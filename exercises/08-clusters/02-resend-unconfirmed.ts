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
    // TODO 1: const connection = await connect(); listen for its 'error'; createConfirmChannel()
    //         (listen for its 'error'); assertQueue(queue) as a durable quorum queue.
    //         Then make it the current `link`, and on the connection's 'close', when it is still
    //         the current link, call replace('connection lost').
    // TODO 5: last, send again every message still unconfirmed, oldest first: for (const id of unconfirmed.keys()) send(id);
    throw new Error('TODO: open() in exercises/08-clusters/02-resend-unconfirmed.ts');
  }

  // Leaves the current connection (lost, or hanging) and opens a new one.
  function replace(why: string): void {
    console.error(`${why}: opening a new connection`);
    // TODO 4: forget the current link, close its connection WITHOUT awaiting (.catch(() => {})): a
    //         node that hangs never answers. Mark every unconfirmed message as sent on no
    //         connection (sentOn = undefined). Then open() again; when that fails, replace() again.
  }

  function send(id: string): void {
    const message = unconfirmed.get(id)!;
    const current = link;
    if (!current) return; // between two connections: open() sends it once there is one
    // TODO 2: note where and when it is sent (sentOn, sentAt), then
    //         current.channel.sendToQueue(queue, message.body, { persistent: true, messageId: id }, (err) => { … })
    //         inside a try/catch (a closed channel throws). In the callback: ignore an answer from a
    //         connection you left (message.sentOn !== current); on a nack (err) send it again 100 ms
    //         later; otherwise delete it from `unconfirmed` and call message.confirmed().
  }

  await open();

  // Every 100 ms until close(): a message sent on the current connection that waits too long for its confirm.
  const watch = setInterval(() => {
    // TODO 3: when a message sent on a connection (sentOn) has waited longer than
    //         options.confirmTimeoutMs since sentAt, replace('no confirm').
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
      // TODO 6: await every unconfirmed message's `done`, then clearInterval(watch), forget the
      //         link (its 'close' is yours: no new connection) and await its connection.close().
    },
  };
}

// On its own: RABBITMQ_URLS=amqp://localhost:5673,amqp://localhost:5674,amqp://localhost:5675 npx tsx exercises/08-clusters/02-resend-unconfirmed.ts
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
