// What the rest of the workbook knows about "the broker": where it is, what it is,
// and whether the workbook may restart it (only brokers it started itself).
export type BrokerSource = 'env' | 'localhost' | 'private' | 'docker' | 'classroom';

/**
 * A learner's seat in a classroom (npm run classroom -- join): the learner's own user, which
 * may not create vhosts, so checks borrow one of `pool` (runner/classroom/pool.ts). Plain data.
 */
export interface ClassroomSeat {
  className: string;
  student: string;
  pool: string[];
  demoVhost: string;
  classroomVhost: string;
  exchange: string;
}

/** How to restart the broker, when the workbook owns it. Plain data: it crosses into check workers. */
export type RestartHandle =
  | { kind: 'private'; nodeName: string; ctl: string; env: Record<string, string> }
  | { kind: 'docker'; containerId: string };

export interface BrokerInfo {
  source: BrokerSource;
  /** One line for humans: which broker and why it was chosen. */
  description: string;
  /** amqp://user:pass@host:port, without a vhost. */
  amqpUrl: string;
  managementUrl: string;
  username: string;
  password: string;
  version: string;
  restart?: RestartHandle;
  /** Set when a classroom is joined: no administrator rights, sandboxes from a pool. */
  classroom?: ClassroomSeat;
}

/** The port of an amqp:// or amqps:// URL: the one it names, else the protocol's default (5672; 5671 with TLS). */
export function amqpPort(url: URL): number {
  return Number(url.port || (url.protocol === 'amqps:' ? 5671 : 5672));
}

/** amqp URL for one vhost of the broker ("/" must be written %2F). */
export function vhostUrl(broker: BrokerInfo, vhost: string): string {
  return `${broker.amqpUrl}/${encodeURIComponent(vhost)}`;
}

/** Compares "3.10.8" with "4.0": negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((n) => Number.parseInt(n, 10) || 0);
  const pb = b.split(/[.-]/).map((n) => Number.parseInt(n, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export class NoBrokerError extends Error {}
