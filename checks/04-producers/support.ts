// Sees how many bytes the learner's code lets pile up in amqplib's per-channel write
// buffers: the memory a publisher that ignores publish()'s `false` keeps growing.
//
// Why not the socket? amqplib writes each channel's frames into an in-memory stream
// (a PassThrough with a high-water mark of 1,024 frames) and a multiplexer copies them
// to the socket only while socket.write() returns true. The socket's writableLength
// therefore never exceeds its own high-water mark (~16 KB), however badly the code
// behaves: the backlog lives in the channel's buffer. This module wraps, for channels
// opened after it is loaded, that buffer's write() and read() to keep a running count.
//
// Relies on amqplib internals (lib/connection.js: Connection#freshChannel and
// this.channels[n].buffer), checked against amqplib 2.3.1. When they change, the
// watcher reports `available: false` and the check skips the measurement.
import { createRequire } from 'node:module';
import path from 'node:path';

interface Stream {
  write(chunk: unknown, ...rest: unknown[]): boolean;
  read(...args: unknown[]): unknown;
}
interface ConnectionInternals {
  channels: ({ buffer?: Stream } | null)[];
}

const size = (chunk: unknown) => (Buffer.isBuffer(chunk) ? chunk.length : 0);

let available = false;
let maxBytes = 0;

function install(): void {
  const require = createRequire(import.meta.url);
  // The package's "exports" hide lib/, so go through the file path of the main entry.
  const file = path.join(path.dirname(require.resolve('amqplib')), 'lib', 'connection.js');
  const { Connection } = require(file) as { Connection?: { prototype: Record<string, unknown> } };
  const fresh = Connection?.prototype.freshChannel;
  if (typeof fresh !== 'function') return;
  Connection!.prototype.freshChannel = function (this: ConnectionInternals, ...args: unknown[]) {
    const id = (fresh as (...a: unknown[]) => number).apply(this, args);
    const buffer = this.channels[id]?.buffer;
    if (buffer && typeof buffer.write === 'function' && typeof buffer.read === 'function') {
      let pending = 0; // bytes written by the channel, not yet taken by the multiplexer
      const write = buffer.write.bind(buffer);
      const read = buffer.read.bind(buffer);
      buffer.write = (chunk: unknown, ...rest: unknown[]) => {
        pending += size(chunk);
        if (pending > maxBytes) maxBytes = pending;
        return write(chunk, ...rest);
      };
      buffer.read = (...a: unknown[]) => {
        const chunk = read(...a);
        pending -= size(chunk);
        return chunk;
      };
    }
    return id;
  };
  available = true;
}

try {
  install();
} catch {
  available = false;
}

export const publishBuffers = {
  /** False when amqplib's internals are not what this module expects. */
  get available(): boolean {
    return available;
  },
  /** Forget the maximum seen so far (call it right before the code under check runs). */
  reset(): void {
    maxBytes = 0;
  },
  /** The most bytes that ever waited in one channel's write buffer since reset(). */
  get maxBytes(): number {
    return maxBytes;
  },
};
