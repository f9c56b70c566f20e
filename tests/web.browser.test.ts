// The web reader in a real browser (headless Debian Chromium through playwright-core):
// `npm run web` started as a learner starts it, a chapter with the status of its exercises,
// and the live topology of a vhost of this test's own (exchanges, binding keys, a dead-letter
// route set by a policy, an alternate exchange, an exchange-to-exchange binding), whose
// queue depth changes on the page while messages are published. Screenshots go to
// .workbook/artifacts/.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import amqp from 'amqplib';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ManagementClient } from '../runner/broker/management.js';
import { vhostUrl } from '../runner/broker/types.js';

const CHROMIUM = '/usr/bin/chromium';
const broker = inject('broker');
const root = path.resolve(import.meta.dirname, '..');
const artifacts = path.join(root, '.workbook', 'artifacts');
// Namespaced by this process: the broker is shared with other runs.
const vhost = `workbook-web-test-${process.pid}`;
// Chapter 3's demo, run here in a vhost of this test's own (not workbook-demo-03, which a learner's demo uses).
const demoVhost = `workbook-web-demo-test-${process.pid}`;
const hostileKey = '<b>eu</b>.#';
const { WORKBOOK_BROKER: _forced, ...inherited } = process.env;

let state: string;
let reader: ChildProcess | undefined;
let url: string;
let browser: Browser;
const mgmt = new ManagementClient(broker.managementUrl, broker.username, broker.password);

/** Exchanges, queues and bindings of a small shop, with dead-lettering from a policy and from an argument. */
async function declareTopology() {
  await mgmt.createVhost(vhost, broker.username);
  await mgmt.setPolicy(vhost, 'orders-dlx', { pattern: '^orders-eu$', definition: { 'dead-letter-exchange': 'orders-dlx', 'dead-letter-routing-key': 'expired' }, 'apply-to': 'queues' });
  const connection = await amqp.connect(vhostUrl(broker, vhost));
  try {
    const ch = await connection.createChannel();
    await ch.assertExchange('orders-unrouted', 'fanout', { durable: true });
    await ch.assertExchange('orders', 'topic', { durable: true, alternateExchange: 'orders-unrouted' });
    await ch.assertExchange('billing', 'fanout', { durable: true });
    await ch.assertExchange('orders-dlx', 'direct', { durable: true });
    await ch.assertQueue('orders-eu', { durable: true });
    await ch.assertQueue('unrouted', { durable: true });
    await ch.assertQueue('billing-inbox', { durable: true });
    await ch.assertQueue('orders-dead', { durable: true });
    await ch.assertQueue('payments', { durable: true, deadLetterExchange: 'orders-dlx' });
    await ch.bindQueue('orders-eu', 'orders', 'eu.*');
    await ch.bindQueue('payments', 'orders', '*.paid');
    await ch.bindQueue('unrouted', 'orders-unrouted', '');
    await ch.bindExchange('billing', 'orders', hostileKey);
    await ch.bindQueue('billing-inbox', 'billing', '');
    await ch.bindQueue('orders-dead', 'orders-dlx', 'expired');
    await ch.close();
  } finally {
    await connection.close();
  }
}

async function publish(count: number) {
  const connection = await amqp.connect(vhostUrl(broker, vhost));
  try {
    const ch = await connection.createConfirmChannel();
    for (let i = 0; i < count; i++) ch.publish('orders', 'eu.placed', Buffer.from(`order ${i}`), { persistent: true });
    await ch.waitForConfirms();
    await ch.close();
  } finally {
    await connection.close();
  }
}

/** `npm run web -- --port 0 --vhost VHOST` as a learner runs it; resolves with the address it prints. */
function startReader(): Promise<string> {
  return new Promise((resolve, reject) => {
    reader = spawn(process.execPath, ['runner/start.mjs', 'web', '--port', '0', '--vhost', vhost, demoVhost], {
      cwd: root,
      env: { ...inherited, WORKBOOK_STATE_DIR: state, RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const seen = (chunk: Buffer) => {
      out += chunk.toString();
      const found = /http:\/\/127\.0\.0\.1:\d+/.exec(out);
      if (found) resolve(found[0]);
    };
    reader.stdout!.on('data', seen);
    reader.stderr!.on('data', seen);
    reader.on('exit', (code) => reject(new Error(`npm run web exited (${code}) before it served:\n${out}`)));
  });
}

/** A trace as check/trace.ts saves it: the learner's fanout set-up binds one queue with a key that is markup. */
function traceOf3_2() {
  const event = (t: number, conn: number, method: string, fields: Record<string, string | number>, dir = 'out') => ({ t, conn, channel: 1, dir, method, fields });
  const declares = (key: string) =>
    ['email', 'sms', 'push'].flatMap((queue, i) => [event(10 + i * 2, 1, 'queue.declare', { queue }), event(11 + i * 2, 1, 'queue.bind', { queue, exchange: 'notifications', routingKey: queue === 'sms' ? key : '' })]);
  const events = (key: string) => [event(5, 1, 'exchange.declare', { exchange: 'notifications', type: 'fanout' }), ...declares(key), event(20, 1, 'connection.close', { code: 200, text: 'Cheers, thanks' })];
  return {
    id: '3.2',
    title: 'Broadcast',
    at: new Date().toISOString(),
    learner: { status: 'failed', summary: 'The queue "sms" got no notification.', targetPath: 'exercises/03-exchanges/02-fanout.ts', flow: { events: events(hostileKey), notes: [{ t: 30, text: 'published 4 messages' }] } },
    reference: { state: 'done', status: 'passed', flow: { events: events(''), notes: [{ t: 30, text: 'published 4 messages' }] } },
  };
}

async function shot(page: Page, name: string) {
  await page.screenshot({ path: path.join(artifacts, `web-${name}.png`), fullPage: true });
}

// CI installs chromium (.ci/run), so there a missing browser is a failure, not a skip.
describe.skipIf(!existsSync(CHROMIUM) && !process.env.CI)('the web reader in a browser', () => {
  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    state = mkdtempSync(path.join(tmpdir(), 'wb-web-'));
    // The learner's progress and the sandbox kept by their last failed check of 3.5.
    const exercises = { '3.1': { status: 'passed', attempts: 2 }, '3.2': { status: 'failed', attempts: 1 } };
    writeFileSync(path.join(state, 'progress.json'), JSON.stringify({ version: 1, exercises }));
    writeFileSync(path.join(state, 'kept-vhosts.json'), JSON.stringify({ '3.5': vhost }));
    // The trace of that failed check of 3.2: the learner's flow (with a hostile routing key) beside the reference solution's.
    mkdirSync(path.join(state, 'traces'));
    writeFileSync(path.join(state, 'traces', '3.2.json'), JSON.stringify(traceOf3_2()));
    await declareTopology();
    await mgmt.createVhost(demoVhost, broker.username);
    url = await startReader();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    reader?.kill();
    await mgmt.deleteVhost(vhost);
    await mgmt.deleteVhost(demoVhost);
    if (state) rmSync(state, { recursive: true, force: true });
  });

  it('lists the chapters with the status of each exercise', async () => {
    const page = await browser.newPage();
    await page.goto(`${url}/`);
    await expect.poll(() => page.locator('.exercise[data-id="3.1"] .status').getAttribute('data-status')).toBe('passed');
    expect(await page.locator('.exercise[data-id="3.2"] .status').getAttribute('data-status')).toBe('failed');
    expect(await page.locator('.exercise[data-id="3.3"] .status').getAttribute('data-status')).toBe('pending');
    await shot(page, 'chapters');
    await page.close();
  });

  it('shows chapter 3 from its Markdown, with its exercises, their status and commands', async () => {
    const page = await browser.newPage();
    await page.goto(`${url}/chapters/3`);
    expect(await page.locator('article h1').textContent()).toContain('Chapter 3: Exchanges and routing');
    expect(await page.locator('article').textContent()).toContain('Direct exchanges: an exact match');
    // Code included from demo.ts, highlighted by highlight.js.
    expect(await page.locator('article pre code.language-ts .hljs-keyword').count()).toBeGreaterThan(0);
    expect(await page.locator('article').textContent()).toContain("channel.assertExchange('sensors', 'topic'");
    const box = (id: string) => page.locator(`.exercise-box[data-exercise="${id}"]`);
    expect(await box('3.1').locator('.status').getAttribute('data-status')).toBe('passed');
    expect(await box('3.2').locator('.status').getAttribute('data-status')).toBe('failed');
    expect(await box('3.2').textContent()).toContain('npm run watch 3.2');
    // The sandbox kept by the failed check of 3.5: its diagram, and the management UI.
    expect(await box('3.5').locator(`a[href="/topology?exercise=3.5"]`).count()).toBe(1);
    expect(await page.locator('aside a', { hasText: 'exchanges' }).getAttribute('href')).toMatch(/\/#\/exchanges$/);
    await shot(page, 'chapter-3');
    await page.close();
  });

  it('draws the vhost live: exchanges, binding keys, queues, dead letters by policy, and a depth that changes', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${url}/topology?vhost=${encodeURIComponent(vhost)}`);
    const svg = page.locator('#diagram svg.topology');
    await svg.waitFor({ timeout: 15_000 });
    for (const id of ['x:orders', 'x:billing', 'x:orders-dlx', 'x:orders-unrouted', 'q:orders-eu', 'q:orders-dead', 'q:payments', 'q:billing-inbox']) {
      expect(await svg.locator(`g.node[data-id="${id}"]`).count(), id).toBe(1);
    }
    const edge = (kind: string, from: string, to: string) => svg.locator(`g.edge.${kind}[data-from="${from}"][data-to="${to}"]`);
    expect(await edge('binding', 'x:orders', 'q:orders-eu').textContent()).toBe('"eu.*"');
    // The dead-letter route of orders-eu comes from a policy, which only effective_policy_definition shows.
    expect(await edge('dead-letter', 'q:orders-eu', 'x:orders-dlx').textContent()).toBe('dead letters (policy orders-dlx) key "expired"');
    expect(await edge('dead-letter', 'q:payments', 'x:orders-dlx').textContent()).toBe('dead letters (argument)');
    expect(await edge('alternate', 'x:orders', 'x:orders-unrouted').count()).toBe(1);
    // An exchange-to-exchange binding, whose key came from the broker: shown as text, never as markup.
    expect(await edge('binding', 'x:orders', 'x:billing').textContent()).toBe(JSON.stringify(hostileKey));
    expect(await svg.locator('b').count()).toBe(0);
    const ready = () => page.locator('#queues tr[data-queue="orders-eu"] td').nth(2).textContent();
    expect(await ready()).toBe('0');
    await shot(page, 'topology-before');

    await publish(3);
    // The management API counts messages once per statistics interval: seconds, not milliseconds.
    await expect.poll(ready, { timeout: 30_000, interval: 250 }).toBe('3');
    expect(await svg.locator('g.node[data-id="q:orders-eu"]').textContent()).toContain('ready 3');
    await shot(page, 'topology-after');
    await page.close();
  }, 90_000);

  it("draws chapter 3's topology as its demo builds it", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${url}/topology?vhost=${encodeURIComponent(demoVhost)}`);
    await expect.poll(() => page.locator('#live-state').textContent(), { timeout: 15_000 }).toContain(`vhost ${demoVhost}`);
    const { demo } = (await import('../chapters/03-exchanges/demo.js')) as { demo: (url: string, say: (line: string) => void) => Promise<void> };
    await demo(vhostUrl(broker, demoVhost), () => undefined);
    const svg = page.locator('#diagram svg.topology');
    await expect.poll(() => svg.locator('g.edge.binding[data-from="x:sensors"][data-to="q:hq-temperatures"]').textContent(), { timeout: 15_000 }).toBe('"hq.*.temperature"');
    expect(await svg.locator('g.edge.alternate[data-from="x:sensors"][data-to="x:sensors-unrouted"]').count()).toBe(1);
    // The demo leaves its readings in the queues (it reads them without acking): 4 matched "hq.#".
    await expect.poll(() => page.locator('#queues tr[data-queue="hq-everything"] td').nth(2).textContent(), { timeout: 30_000, interval: 250 }).toBe('4');
    await shot(page, 'topology-demo-3');
    await page.close();
  }, 90_000);

  it("draws the message flow of a failed check beside the reference solution's, the first difference marked", async () => {
    const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
    await page.goto(`${url}/chapters/3`);
    await page.locator('.exercise-box[data-exercise="3.2"] a[href="/trace/3.2"]').click();
    expect(await page.locator('svg.sequence').count()).toBe(2);
    expect(await page.locator('#learner svg .marked').textContent()).toContain(`key ${JSON.stringify(hostileKey)}`);
    expect(await page.locator('#reference svg .marked').textContent()).toContain('key ""');
    expect(await page.locator('.first-difference').textContent()).toContain('the arguments differ');
    expect(await page.locator('svg b').count()).toBe(0);
    await shot(page, 'trace-3.2');
    await page.close();
  });

  it('follows an exercise: the vhost its last failed check kept', async () => {
    const page = await browser.newPage();
    await page.goto(`${url}/topology?exercise=3.5`);
    await expect.poll(() => page.locator('#live-state').textContent(), { timeout: 15_000 }).toContain(`vhost ${vhost} (kept by your last failed check of 3.5)`);
    expect(await page.locator('#diagram g.node[data-id="q:orders-eu"]').count()).toBe(1);
    await page.close();
  });

  it('refuses a vhost it does not list', async () => {
    const res = await fetch(`${url}/topology?vhost=${encodeURIComponent('/')}`);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('is not one of them');
  });
});
