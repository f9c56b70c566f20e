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
import amqp, { type ChannelModel } from 'amqplib';
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

export async function startActorConsumer(url: string, handle: (actor: string, body: string) => Promise<void>): Promise<ActorConsumer> {
  // TODO 1: connect ('error' listeners), a confirm channel, assertQueue(QUEUE, durable quorum with
  //         'x-single-active-consumer': true), assertQueue(SKIPPED_QUEUE), prefetch(1), consume with { noAck: false }.
  // TODO 8: a helper that copies a message (sendToQueue(queue, msg.content, { ...msg.properties, persistent: true }))
  //         and awaits channel.waitForConfirms(); and a way to run one job at a time (a promise chain)
  //         for the consumer, resume() and skip().
  // TODO 2: per message: actor = msg.properties.headers.actor; await handle(actor, body); ack.
  // TODO 3: handle() rejected: assertQueue(heldQueue(actor)), assertQueue(failedQueue(actor)), copy the message
  //         to failedQueue(actor), then ack.
  // TODO 4, 5: a blocked actor (remembered in a Map, or found with queueExists(connection, failedQueue(actor))
  //         the first time an actor shows up): copy the message to heldQueue(actor), then ack.
  throw new Error('TODO: write startActorConsumer() in exercises/07-dead-letters/05-fifo-per-actor.ts');

  return {
    async resume(actor) {
      // TODO 6: get() the message of failedQueue(actor), handle it, ack; then get() the held ones one by one.
      //         A failure: copy it to failedQueue(actor), ack it, return false. Nothing left: delete both queues, return true.
      return false;
    },
    async skip(actor) {
      // TODO 7: copy the message of failedQueue(actor) to SKIPPED_QUEUE (confirmed), ack it, then like resume()
      return false;
    },
    async stop() {
      // TODO 8: cancel the consumer, let the message in hand finish, close the connection
    },
  };
}

// On its own: npx tsx exercises/07-dead-letters/05-fifo-per-actor.ts   (Ctrl-C to stop)
// Publish to "actor-events" with a header actor=A and the body "fail" to block A; A's later messages wait.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startActorConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', async (actor, body) => {
    if (body === 'fail') throw new Error('cannot handle "fail"');
    console.log(`${actor}: ${body}`);
  });
  console.log(`Consuming "${QUEUE}". Ctrl-C to stop.`);
  process.once('SIGINT', () => void consumer.stop());
}
