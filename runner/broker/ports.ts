// Port probing: is something listening, and which port is free.
import net from 'node:net';

/** True when something accepts TCP connections on host:port within the timeout. */
export function isListening(port: number, host = '127.0.0.1', timeoutMs = 300): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** True when we could bind the port ourselves (nobody else holds it). */
export function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the OS says is free right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '0.0.0.0' }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** `preferred` when free, otherwise any free port. */
export async function pickPort(preferred: number, taken: number[] = []): Promise<number> {
  if (!taken.includes(preferred) && (await isFree(preferred))) return preferred;
  for (;;) {
    const p = await freePort();
    if (!taken.includes(p)) return p;
  }
}
