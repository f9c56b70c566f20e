// Exercise 7.1: route dead letters by policy
// Text: chapters/07-dead-letters/README.md   Check: npm run check 7.1   Hint: npm run hint 7.1
//
// setUpDeadLettering(url, management, queue) must:
//   1. declare `queue` as a durable quorum queue WITHOUT dead-letter or delivery-limit arguments: it may
//      exist already, holding messages, and the broker refuses a declaration that adds an argument to
//      an existing queue (406 PRECONDITION_FAILED),
//   2. declare the durable direct exchange `<queue>.dlx` and the durable quorum queue `<queue>.dead`,
//      bound to it with the routing key "dead",
//   3. PUT the policy `<queue>-dead-letters` through the management API (fetch, HTTP basic auth), in
//      the vhost `management.vhost` (management.url may end with "/"):
//      a. its pattern matches `queue` and no other name: anchored (^…$), every character of the name
//         that is not a letter, digit or "_" escaped with a backslash ("." matches any character),
//      b. it applies to queues only ("apply-to": "queues"), with priority 10: above the vhost's
//         catch-all policies (priority 0), since only one policy applies to a queue,
//      c. its definition: dead-letter-exchange `<queue>.dlx`, dead-letter-routing-key "dead", and
//         delivery-limit 5,
//   4. throw an Error that names the status when the management API refuses the policy (401, 400…),
//   5. close its connection in every case, and be safe to run again: a second run changes nothing.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

/** Where the management API is, who may use it, and the vhost the policy belongs to. */
export interface ManagementAccess {
  url: string;
  user: string;
  password: string;
  vhost: string;
}

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function setUpDeadLettering(url: string, management: ManagementAccess, queue: string): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    // TODO 1: declare `queue` as a durable quorum queue: QUORUM, and no x-dead-letter-* argument.
    // TODO 2: declare the direct exchange `${queue}.dlx` and the quorum queue `${queue}.dead`,
    //         and bind the queue to the exchange with the routing key 'dead'.
    await channel.close();
  } finally {
    await connection.close();
  }

  // TODO 3: PUT the policy `${queue}-dead-letters` with fetch:
  //           URL:   management.url (without a trailing "/") + '/api/policies/' + vhost + '/' + name,
  //                  each of the two URL-encoded (encodeURIComponent),
  //           headers: authorization (Basic, base64 of "user:password") and content-type application/json,
  //           body:  { pattern, 'apply-to': 'queues', priority: 10, definition: { … } }.
  //         The pattern: '^' + the name with every non-word character escaped + '$'
  //         (queue.replace(/\W/g, '\\$&') turns "billing.orders" into "billing\.orders").
  // TODO 4: when the answer is not ok (response.ok is false), throw an Error that names response.status.
  throw new Error('TODO: set the policy in exercises/07-dead-letters/01-dead-letter-policy.ts');
}

// On its own: npx tsx exercises/07-dead-letters/01-dead-letter-policy.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const management = { url: process.env.RABBITMQ_MANAGEMENT_URL ?? 'http://localhost:15672', user: 'guest', password: 'guest', vhost: '/' };
  await setUpDeadLettering(process.env.RABBITMQ_URL ?? 'amqp://localhost', management, 'billing.orders');
  console.log('"billing.orders" now dead-letters to "billing.orders.dead", by the policy "billing.orders-dead-letters".');
}
