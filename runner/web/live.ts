// Keeps the diagram of a vhost live: while at least one page listens, the server polls the
// management API every second and sends a new snapshot to every listener when it changed.
// When the last page closes, the poll stops, so an idle reader puts no load on the broker.
export type Snapshot = string;

interface Poller {
  listeners: Set<(snapshot: Snapshot) => void>;
  last?: Snapshot;
  timer?: NodeJS.Timeout;
  stopped: boolean;
}

export class LiveTopology {
  private readonly pollers = new Map<string, Poller>();

  /** `read` makes one snapshot of a vhost (it never rejects: an error is a snapshot too). */
  constructor(private readonly read: (vhost: string) => Promise<Snapshot>, private readonly intervalMs = 1000) {}

  /** Calls `send` with the vhost's current snapshot, then with each change. Returns how to stop listening. */
  subscribe(vhost: string, send: (snapshot: Snapshot) => void): () => void {
    let poller = this.pollers.get(vhost);
    if (!poller) {
      poller = { listeners: new Set(), stopped: false };
      this.pollers.set(vhost, poller);
      void this.tick(vhost, poller);
    } else if (poller.last !== undefined) {
      send(poller.last);
    }
    poller.listeners.add(send);
    const p = poller;
    return () => {
      p.listeners.delete(send);
      if (p.listeners.size === 0) this.stop(vhost, p);
    };
  }

  /** The vhosts being polled now. */
  polling(): string[] {
    return [...this.pollers.keys()];
  }

  close(): void {
    for (const [vhost, p] of this.pollers) this.stop(vhost, p);
  }

  private stop(vhost: string, p: Poller) {
    p.stopped = true;
    clearTimeout(p.timer);
    if (this.pollers.get(vhost) === p) this.pollers.delete(vhost);
  }

  // One poll at a time per vhost: the next starts a full interval after the previous ended,
  // so a slow management API is never asked twice at once.
  private async tick(vhost: string, p: Poller): Promise<void> {
    const snapshot = await this.read(vhost);
    if (p.stopped) return;
    if (snapshot !== p.last) {
      p.last = snapshot;
      for (const send of p.listeners) send(snapshot);
    }
    p.timer = setTimeout(() => void this.tick(vhost, p), this.intervalMs);
  }
}
