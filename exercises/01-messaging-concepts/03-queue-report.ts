// Exercise 1.3: read the broker through the management API
// Text: chapters/01-messaging-concepts/README.md   Check: npm run check 1.3   Hint: npm run hint 1.3
//
// queueReport(managementUrl, user, password, vhost) must:
//   1. GET <managementUrl>/api/queues/<vhost> with fetch, the vhost URL-encoded
//      ("/" is %2F, and a vhost may contain "/" or spaces); managementUrl may end with "/",
//   2. authenticate with HTTP basic auth (user and password),
//   3. throw an Error that names the status when the API answers with an error status (401, 404...),
//   4. return one { name, messages, consumers } per queue of that vhost, sorted by name,
//      where messages counts every message in the queue: ready + unacknowledged.
import { pathToFileURL } from 'node:url';

export interface QueueLine {
  name: string;
  messages: number;
  consumers: number;
}

export async function queueReport(managementUrl: string, user: string, password: string, vhost: string): Promise<QueueLine[]> {
  // TODO 1: build the URL: managementUrl (without a trailing '/') + '/api/queues/' + the vhost, encoded with encodeURIComponent
  // TODO 2: fetch it with the header authorization: 'Basic ' + base64 of `${user}:${password}`
  //         (Buffer.from(text).toString('base64'))
  // TODO 3: if !response.ok, throw an Error that names the status
  // TODO 4: read the JSON array; keep name, messages and consumers of each queue; sort by name
  throw new Error('TODO: write queueReport() in exercises/01-messaging-concepts/03-queue-report.ts');
}

// On its own: npx tsx exercises/01-messaging-concepts/03-queue-report.ts [vhost]
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const managementUrl = process.env.RABBITMQ_MANAGEMENT_URL ?? 'http://localhost:15672';
  console.table(await queueReport(managementUrl, 'guest', 'guest', process.argv[2] ?? '/'));
}
