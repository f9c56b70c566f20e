// The HTTP harness of chapter 9's checks (runner/check/http-app.ts): it serves a learner's app
// on a free port, talks HTTP to it, and always stops it and frees the port, in the worker
// thread and in a child process, even when the app's handlers or close() hang.
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnApp, startApp, stopAllApps } from '../runner/check/http-app.js';
import { PhaseClock } from '../runner/check/timings.js';
import type { CheckContext } from '../runner/check/context.js';
import { CheckFailure } from '../runner/check/verdict.js';
import { buildFile } from '../runner/build.mjs';
import { createApp, createRouter, createStuckApp } from './fixtures/http-app/apps.js';

// The child imports compiled JavaScript, as it does in a check.
const FIXTURE = buildFile(path.resolve('tests/fixtures/http-app/apps.ts'));

/** Just what the harness uses of a CheckContext. */
function fakeContext(): CheckContext<unknown> {
  const steps: string[] = [];
  return {
    steps,
    targetPath: FIXTURE,
    clock: new PhaseClock(),
    log: (s: string) => steps.push(s),
    fail: (f: { summary: string }) => {
      throw new CheckFailure(f);
    },
    call: async <R>(_label: string, fn: () => R) => fn(),
  } as unknown as CheckContext<unknown>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

describe('startApp (in the worker)', () => {
  it('serves an app, answers, and frees the port on stop', async () => {
    const app = await startApp(fakeContext(), 'createApp()', () => createApp({ greeting: 'hi' }));
    const r = await app.request('GET', '/hello');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ greeting: 'hi' });
    expect(await app.stop()).toMatchObject({ close: 'ok', abandoned: 0 });
    expect(await portFree(app.port)).toBe(true);
  });

  it('mounts a Router on an app of its own', async () => {
    const app = await startApp(fakeContext(), 'createRouter()', () => createRouter());
    expect((await app.request('GET', '/hello')).json).toEqual({ greeting: 'from a router' });
    await app.stop();
  });

  it('gives up on a hanging request and a hanging close(), and still frees the port', async () => {
    const app = await startApp(fakeContext(), 'createStuckApp()', () => createStuckApp());
    const pending = app.request('GET', '/hang', { timeoutMs: 3000 });
    await new Promise((r) => setTimeout(r, 100));
    const report = await app.stop({ graceMs: 200, closeTimeoutMs: 200 });
    expect(report).toMatchObject({ close: 'hung', abandoned: 1 });
    expect((await pending).status).toBe(0);
    expect(await portFree(app.port)).toBe(true);
  });

  it('fails with a verdict when the factory returns something that is not an app', async () => {
    await expect(startApp(fakeContext(), 'createApp()', () => ({ server: 1 }) as never)).rejects.toThrow(/not an Express app/);
  });
});

describe('spawnApp (in a child process)', () => {
  it('serves the app from another process, and kill() frees the port', async () => {
    const app = await spawnApp(fakeContext(), 'createApp()', { exportName: 'createApp', deps: { greeting: 'child' } });
    const r = await app.request('GET', '/hello');
    expect(r.json).toMatchObject({ greeting: 'child' });
    expect((r.json as { pid: number }).pid).toBe(app.pid);
    expect(await app.kill('SIGKILL')).toMatchObject({ signal: 'SIGKILL' });
    expect(await portFree(app.port)).toBe(true);
  });

  it('stop() runs close(); a close() that hangs ends in SIGKILL', async () => {
    const ok = await spawnApp(fakeContext(), 'createApp()', { exportName: 'createApp', deps: { greeting: 'x' } });
    expect(await ok.stop()).toMatchObject({ close: 'ok' });
    expect(await ok.exited).toMatchObject({ code: 0 });
    const stuck = await spawnApp(fakeContext(), 'createStuckApp()', { exportName: 'createStuckApp', deps: {} });
    expect(await stuck.stop({ graceMs: 100, closeTimeoutMs: 300 })).toMatchObject({ close: 'hung' });
    expect(await portFree(stuck.port)).toBe(true);
  });

  it('a factory that never resolves fails after the start time-out, and the process is gone', async () => {
    const t = fakeContext();
    await expect(spawnApp(t, 'createNeverApp()', { exportName: 'createNeverApp', deps: {}, startTimeoutMs: 1500 })).rejects.toThrow(/did not finish within 1.5 s/);
  });

  it('stopAllApps() stops what is left', async () => {
    const a = await spawnApp(fakeContext(), 'createApp()', { exportName: 'createApp', deps: { greeting: 'a' } });
    const b = await startApp(fakeContext(), 'createApp()', () => createApp({ greeting: 'b' }));
    await stopAllApps({ graceMs: 100, closeTimeoutMs: 100 });
    expect(await portFree(a.port)).toBe(true);
    expect(await portFree(b.port)).toBe(true);
  });
});
