// The instructor's page, for bench/classroom-load.ts: logs in to the dashboard and follows its
// live stream in a thread of its own, so that the time each update arrives is taken where the
// page would take it, not after the bench's own busy event loop (60 checks at once) gets to it.
// Plain JavaScript: a worker thread does not go through tsx.
import { parentPort, workerData } from 'node:worker_threads';

const { url, password } = workerData;
const login = await fetch(`${url}login`, { method: 'POST', redirect: 'manual', body: new URLSearchParams({ password }) });
const cookie = login.headers.get('set-cookie')?.split(';')[0];
if (login.status !== 303 || !cookie) throw new Error(`dashboard login failed: ${login.status}`);
const abort = new AbortController();
parentPort.on('message', (msg) => msg === 'stop' && abort.abort());
const res = await fetch(`${url}events`, { headers: { cookie, accept: 'text/event-stream' }, signal: abort.signal });
parentPort.postMessage({ type: 'ready', cookie });

const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
let buffer = '';
for (;;) {
  const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
  if (done) break;
  const at = Date.now();
  buffer += value;
  let end;
  while ((end = buffer.indexOf('\n\n')) >= 0) {
    const message = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    const data = /^event: update\ndata: (.*)$/m.exec(message)?.[1];
    const cell = data ? JSON.parse(data).cell : undefined;
    if (cell) parentPort.postMessage({ type: 'cell', cell, at });
  }
}
parentPort.close();
