// Runs a chapter's live demo against the broker, in a vhost of its own that stays
// afterwards so the learner can explore it in the management UI, then narrates what
// the broker holds now.
import { existsSync } from 'node:fs';
import { importModule } from '../import-module.js';
import amqp from 'amqplib';
import pc from 'picocolors';
import { terminalTable } from '../table.js';
import type { Chapter } from '../manifest/load.js';
import { vhostUrl, type BrokerInfo } from '../broker/types.js';
import { enc, managementFor } from '../broker/management.js';

/** What a chapter's demo.ts exports. `say` narrates a step; `management` is for demos that use the HTTP API (policies, chapter 7). */
export type Demo = (url: string, say: (line: string) => void, management: DemoManagement) => Promise<void>;

/** The management API of the demo's broker, and the demo's vhost. */
export interface DemoManagement {
  url: string;
  user: string;
  password: string;
  vhost: string;
}

export function demoVhost(chapter: Chapter): string {
  return `workbook-demo-${String(chapter.number).padStart(2, '0')}`;
}

export async function runDemo(chapter: Chapter, broker: BrokerInfo, out: (line: string) => void): Promise<void> {
  if (!existsSync(chapter.demoPath)) return;
  const mgmt = managementFor(broker);
  // In a classroom the learner may not create vhosts: every demo runs in their own demo vhost, emptied first.
  const vhost = broker.classroom?.demoVhost ?? demoVhost(chapter);
  if (broker.classroom) await (await import('../classroom/empty.js')).emptyVhost(mgmt, vhost);
  else {
    await mgmt.deleteVhost(vhost);
    await mgmt.createVhost(vhost, broker.username);
  }
  const url = vhostUrl(broker, vhost);

  out(pc.bold(`\n▶ Live demo: chapter ${chapter.number}, in vhost "${vhost}"`));
  out(pc.dim(`  against RabbitMQ ${broker.version}, ${broker.description}\n`));
  const { demo } = await importModule<{ demo: Demo }>(chapter.demoPath);
  const started = Date.now();
  const management = { url: broker.managementUrl, user: broker.username, password: broker.password, vhost };
  await withTimeout(demo(url, (line) => out(`  ${pc.cyan('•')} ${line}`), management), 60_000, 'the demo did not finish within 60 s');
  out(pc.dim(`  (${((Date.now() - started) / 1000).toFixed(2)} s)`));
  out(await describeVhost(broker, vhost));
  const login = broker.username === 'guest' && broker.password === 'guest' ? 'user guest, password guest' : `user ${broker.username}`;
  out(`  Explore it in the management UI: ${pc.cyan(`${broker.managementUrl}/#/queues/${enc(vhost)}`)} (${login})`);
}

/** Queues with their exact message counts (over AMQP; the management API lags a statistics tick), and bindings. */
export async function describeVhost(broker: BrokerInfo, vhost: string): Promise<string> {
  const mgmt = managementFor(broker);
  const queues = await mgmt.queues(vhost);
  const bindings = (await mgmt.bindings(vhost)).filter((b) => b.source !== '');
  const table = terminalTable({ head: ['queue', 'type', 'durable', 'ready', 'consumers'] });
  const conn = await amqp.connect(vhostUrl(broker, vhost));
  try {
    for (const q of queues) {
      const ch = await conn.createChannel();
      const ok = await ch.checkQueue(q.name).catch(() => undefined);
      await ch.close().catch(() => undefined);
      table.push([q.name, q.type ?? 'classic', q.durable ? 'yes' : 'no', ok?.messageCount ?? '?', ok?.consumerCount ?? '?']);
    }
  } finally {
    await conn.close();
  }
  const lines = [`\n  What the broker holds now in "${vhost}":`, table.toString().replace(/^/gm, '  ')];
  if (bindings.length) {
    const bt = terminalTable({ head: ['exchange', 'routing key', '→ queue/exchange'] });
    // Quoted: an empty routing key is a key too (a fanout binding's), not a missing one.
    for (const b of bindings) bt.push([b.source, JSON.stringify(b.routing_key), b.destination]);
    lines.push(bt.toString().replace(/^/gm, '  '));
  }
  return lines.join('\n');
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
