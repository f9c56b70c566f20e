// Exercise 7.5: FIFO per actor: a message that fails blocks its actor, and only its actor
// Text: chapters/07-dead-letters/README.md   Check: npm run check 7.5   Hint: npm run hint 7.5
//
// Each message names its actor (a customer, a device, an account) in the header 'actor'. One
// actor's messages must be handled in the order they were published; when one fails, that actor
// waits until an operator fixes it, and the others carry on. startActorConsumer(url, handle) must:
//   1. declare QUEUE as a durable quorum queue with a single active consumer
//      ('x-single-active-consumer': true: a second instance waits as a standby instead of taking
//      messages), and consume it with manual acks and a prefetch of 1,
//   2. call handle(actor, body) with the 'actor' header and the body as text, one call at a time
//      and in queue order, and ack the message once handle() resolved,
//   3. when handle() rejects, block the actor: declare heldQueue(actor) and failedQueue(actor)
//      (durable quorum queues, like SKIPPED_QUEUE), copy the message to failedQueue(actor), then
//      ack it; never requeue it (it would come straight back, ahead of every other actor's messages),
//   4. while an actor is blocked, copy each of its messages to the end of heldQueue(actor) and ack
//      it, without calling handle(); the other actors' messages carry on as before,
//   5. keep the block in RabbitMQ, not only in memory: an actor whose failedQueue exists is blocked,
//      also for a consumer started after a restart (queueExists(), given, tells),
//   6. resume(actor): handle the message of failedQueue(actor) again, then the held messages in
//      order, acking each once handled; when one fails, it becomes the message that blocks the
//      actor (copied to failedQueue(actor)) and resume() resolves false; once none is left, delete
//      both queues and resolve true; an actor that is not blocked: resolve true, do nothing,
//   7. skip(actor): copy the message of failedQueue(actor) to SKIPPED_QUEUE instead of handling it,
//      then go on like resume(); when the broker refuses that copy, skip() rejects and the
//      message stays where it was,
//   8. copies keep the body and the headers, are persistent, and the original is acked only once
//      the broker confirmed its copy; resume() and skip() wait for the message in hand (handle() is
//      never called twice at once); stop() cancels the consumer and closes the connection.
import amqp, { type ChannelModel, type ConsumeMessage, type GetMessage, type Message } from 'amqplib';
import { pathToFileURL } from 'node:url';

export const QUEUE = 'actor-events';
export const SKIPPED_QUEUE = 'actor-events.skipped';
/** Where the message that blocks `actor` waits (one message at most). */
export const failedQueue = (actor: string) => `actor-events.failed.${actor}`;
/** Where the later messages of a blocked actor wait, in order. */
export const heldQueue = (actor: string) => `actor-events.held.${actor}`;

export interface ActorConsumer {
  /** Retries the message that blocks `actor`, then its held messages; true when the actor runs again. */
  resume(actor: string): Promise<boolean>;
  /** Sets aside the message that blocks `actor`, then handles its held messages; true when the actor runs again. */
  skip(actor: string): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * Given: whether a queue exists. A passive declare of a missing queue makes the broker close
 * the channel (404 NOT_FOUND), so it gets a channel of its own.
 */
export async function queueExists(connection: ChannelModel, queue: string): Promise<boolean> {
  const probe = await connection.createChannel();
  probe.on('error', () => undefined); // the 404 closes this channel, and only this one
  try {
    await probe.checkQueue(queue);
    await probe.close();
    return true;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return false;
    throw err; // not an answer: the connection is gone, say
  }
}

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function startActorConsumer(url: string, handle: (actor: string, body: string) => Promise<void>): Promise<ActorConsumer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createConfirmChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  // One active consumer at a time: a second instance is a standby that takes over when this one goes.
  await channel.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true } });
  await channel.assertQueue(SKIPPED_QUEUE, QUORUM);
  await channel.prefetch(1);

  /** Copies `msg` to the end of `queue` and waits until the broker has it (rejects when it refuses it). */
  const copy = async (msg: Message, queue: string): Promise<void> => {
    channel.sendToQueue(queue, msg.content, { ...msg.properties, persistent: true });
    await channel.waitForConfirms();
  };

  // Which actors are blocked: a cache of what RabbitMQ says (a failedQueue exists), filled on first sight.
  const blocked = new Map<string, boolean>();
  const isBlocked = async (actor: string): Promise<boolean> => {
    if (!blocked.has(actor)) blocked.set(actor, await queueExists(connection, failedQueue(actor)));
    return blocked.get(actor)!;
  };
  /** `msg` failed: from now on it blocks its actor. */
  const block = async (actor: string, msg: Message): Promise<void> => {
    await channel.assertQueue(heldQueue(actor), QUORUM);
    await channel.assertQueue(failedQueue(actor), QUORUM); // last: its existence is the block
    await copy(msg, failedQueue(actor));
    blocked.set(actor, true);
  };

  // Consumed messages, resume() and skip() take turns: handle() never runs twice at once.
  let last: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(job: () => Promise<T>): Promise<T> => {
    const run = last.then(job);
    last = run.catch(() => undefined);
    return run;
  };

  const onMessage = async (msg: ConsumeMessage): Promise<void> => {
    const actor = String(msg.properties.headers?.actor);
    if (await isBlocked(actor)) {
      await copy(msg, heldQueue(actor)); // behind the others of its actor, in order
    } else {
      try {
        await handle(actor, msg.content.toString());
      } catch (err) {
        console.error(`${actor} is blocked: ${(err as Error).message}`);
        await block(actor, msg);
      }
    }
    channel.ack(msg); // only now: handled, or copied and confirmed
  };

  /** Handles a message taken from a blocked actor's queues and acks it; false when it failed (it then blocks the actor). */
  const retried = async (actor: string, msg: GetMessage): Promise<boolean> => {
    try {
      await handle(actor, msg.content.toString());
    } catch (err) {
      console.error(`${actor} is still blocked: ${(err as Error).message}`);
      // A copy, then the ack, rather than a requeue: where a requeued message lands differs by queue type and version.
      await copy(msg, failedQueue(actor));
      channel.ack(msg);
      return false;
    }
    channel.ack(msg);
    return true;
  };

  /** Retries (or sets aside) the message that blocks `actor`, then handles its held messages in order. */
  const unblock = async (actor: string, first: 'retry' | 'skip'): Promise<boolean> => {
    if (!(await queueExists(connection, failedQueue(actor)))) return true; // not blocked
    const failed = await channel.get(failedQueue(actor), { noAck: false });
    if (failed && first === 'skip') {
      try {
        await copy(failed, SKIPPED_QUEUE);
      } catch (err) {
        channel.reject(failed, true); // refused: back where it was, alone in its queue
        throw err;
      }
      channel.ack(failed);
    } else if (failed && !(await retried(actor, failed))) {
      return false;
    }
    for (;;) {
      const next = await channel.get(heldQueue(actor), { noAck: false });
      if (next === false) break;
      if (!(await retried(actor, next))) return false;
    }
    await channel.deleteQueue(failedQueue(actor)); // first: its existence is the block
    await channel.deleteQueue(heldQueue(actor));
    blocked.set(actor, false);
    return true;
  };

  const { consumerTag } = await channel.consume(
    QUEUE,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer
      oneAtATime(() => onMessage(msg)).catch((err: Error) => console.error(`message left unacked: ${err.message}`));
    },
    { noAck: false },
  );

  return {
    resume: (actor) => oneAtATime(() => unblock(actor, 'retry')),
    skip: (actor) => oneAtATime(() => unblock(actor, 'skip')),
    async stop() {
      await channel.cancel(consumerTag);
      await oneAtATime(async () => undefined); // let the message in hand finish
      await connection.close();
    },
  };
}

// On its own: npx tsx solutions/07-dead-letters/05-fifo-per-actor.ts   (Ctrl-C to stop)
// Publish to "actor-events" with a header actor=A and the body "fail" to block A; A's later messages wait.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startActorConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', async (actor, body) => {
    if (body === 'fail') throw new Error('cannot handle "fail"');
    console.log(`${actor}: ${body}`);
  });
  console.log(`Consuming "${QUEUE}". Ctrl-C to stop.`);
  process.once('SIGINT', () => void consumer.stop());
}
