// Sees every TCP connection the code under check opens (through node:diagnostics_channel),
// so a check can tell, right after the learner's function returns, whether it left a
// connection to the broker open. The management API lists new connections only after
// its next statistics tick (up to 5 s), too late for a verdict in under a second.
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';

interface Tracked {
  socket: Socket;
  remotePort?: number;
  localPort?: number;
}

const tracked: Tracked[] = [];
const ignored = new WeakSet<Socket>();

export function startTracking(): void {
  dc.subscribe('net.client.socket', (message) => {
    const socket = (message as { socket: Socket }).socket;
    const entry: Tracked = { socket };
    tracked.push(entry);
    socket.once('connect', () => {
      entry.remotePort = socket.remotePort;
      entry.localPort = socket.localPort;
    });
  });
}

/** Sockets opened by the checker itself do not count. */
export function ignoreSocket(socket: Socket | undefined): void {
  if (socket) ignored.add(socket);
}

function learnerSockets(port: number): Tracked[] {
  return tracked.filter((t) => !ignored.has(t.socket) && t.remotePort === port);
}

/** Local ports of learner connections to the broker port that are still open. */
export function openConnectionsTo(port: number): number[] {
  return learnerSockets(port)
    .filter((t) => !t.socket.destroyed && !t.socket.closed)
    .map((t) => t.localPort ?? 0);
}

/** How many connections to the broker port the learner's code has opened so far. */
export function connectionsOpenedTo(port: number): number {
  return learnerSockets(port).length;
}

/**
 * Destroys the learner's open connections to the port the way a network failure does:
 * with ECONNRESET, so the client library sees an error (a bare destroy() is noticed only
 * at the next heartbeat timeout). Returns their local ports.
 */
export function cutConnectionsTo(port: number): number[] {
  const open = learnerSockets(port).filter((t) => !t.socket.destroyed && !t.socket.closed);
  for (const t of open) t.socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' }));
  return open.map((t) => t.localPort ?? 0);
}
