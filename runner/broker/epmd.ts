// Asks epmd, the Erlang port mapper every RabbitMQ node registers with, which node names
// run on this machine. A node whose RabbitMQ application is stopped or restarting
// (stop_app, or still booting) answers no AMQP and no HTTP, but its Erlang VM is
// registered here: that is how we know not to start a second node of the same name.
// The protocol: send NAMES_REQ (a 2-byte length, then the byte 110); epmd answers with its
// port (4 bytes), then lines "name <node> at port <port>\n", and closes the connection.
// https://www.erlang.org/doc/apps/erts/erl_dist_protocol.html#epmd-protocol
import net from 'node:net';

const NAMES_REQ = Buffer.from([0, 1, 110]);

/** The short names (before the @) of the Erlang nodes running on this machine; [] when epmd does not run. */
export function localNodeNames(timeoutMs = 1000): Promise<string[]> {
  const port = Number(process.env.ERL_EPMD_PORT) || 4369;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ port, host: '127.0.0.1' });
    const done = (names: string[]) => {
      socket.destroy();
      resolve(names);
    };
    socket.setTimeout(timeoutMs, () => done([]));
    socket.once('connect', () => socket.write(NAMES_REQ));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.once('end', () => {
      const text = Buffer.concat(chunks).subarray(4).toString('utf8');
      done([...text.matchAll(/^name (\S+) at port \d+$/gm)].map((m) => m[1]!));
    });
    socket.once('error', () => done([]));
  });
}

/** True when an Erlang VM with this node name ("workbook-1a2b3c@localhost") runs on this machine. */
export async function nodeIsRegistered(nodeName: string): Promise<boolean> {
  return (await localNodeNames()).includes(nodeName.split('@')[0]!);
}
