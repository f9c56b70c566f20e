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
  // The vhost is ONE path segment: encodeURIComponent turns "/" into %2F and " " into %20.
  const url = `${managementUrl.replace(/\/+$/, '')}/api/queues/${encodeURIComponent(vhost)}`;
  const response = await fetch(url, {
    headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
  });
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status} ${response.statusText}`);

  const queues = (await response.json()) as { name: string; messages?: number; consumers?: number }[];
  return queues
    // The counts are missing until the statistics of a new queue are first collected.
    .map((q) => ({ name: q.name, messages: q.messages ?? 0, consumers: q.consumers ?? 0 }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

// On its own: npx tsx solutions/01-messaging-concepts/03-queue-report.ts [vhost]
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const managementUrl = process.env.RABBITMQ_MANAGEMENT_URL ?? 'http://localhost:15672';
  console.table(await queueReport(managementUrl, 'guest', 'guest', process.argv[2] ?? '/'));
}
