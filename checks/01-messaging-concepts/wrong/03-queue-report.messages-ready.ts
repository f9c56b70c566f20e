// Known-wrong 1.3: reports messages_ready (waiting for a consumer) instead of messages (ready + unacknowledged).
export interface QueueLine {
  name: string;
  messages: number;
  consumers: number;
}

export async function queueReport(managementUrl: string, user: string, password: string, vhost: string): Promise<QueueLine[]> {
  const url = `${managementUrl}/api/queues/${encodeURIComponent(vhost)}`;
  const response = await fetch(url, {
    headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
  });
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status} ${response.statusText}`);
  const queues = (await response.json()) as { name: string; messages_ready?: number; consumers?: number }[];
  return queues
    .map((q) => ({ name: q.name, messages: q.messages_ready ?? 0, consumers: q.consumers ?? 0 }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
