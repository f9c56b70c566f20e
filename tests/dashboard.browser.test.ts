// The instructor's dashboard in a real browser (headless Chromium through playwright-core), on
// a class of three provisioned on the test broker: the instructor logs in (a wrong password is
// refused first), a learner's check appears in the grid while the page stays open, a hostile
// summary is shown as text and runs nothing, and a learner who keeps failing is highlighted as
// stuck. Screenshots go to .workbook/artifacts/ (git-ignored). The class has a random name and
// is destroyed at the end, whatever happens.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { stripVTControlCharacters as plain } from 'node:util';
import amqp from 'amqplib';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { managementFor } from '../runner/broker/management.js';
import { destroyClass } from '../runner/classroom/provision.js';
import type { ClassFile, JoinFile } from '../runner/classroom/files.js';
import { routingKey, type CheckEvent } from '../runner/classroom/events.js';
import { runCli } from './support/run-cli.js';

const broker = inject('broker');
const root = path.resolve(import.meta.dirname, '..');
const artifacts = path.join(root, '.workbook', 'artifacts');
const { WORKBOOK_BROKER: _forced, RABBITMQ_URL: _url, RABBITMQ_MANAGEMENT_URL: _murl, ...inherited } = process.env;
const admin = managementFor(broker);

const name = `d${randomBytes(3).toString('hex')}`;
const work = mkdtempSync(path.join(tmpdir(), 'wb-dashboard-'));
const classDir = path.join(work, 'class');
const instructorEnv = { ...inherited, WORKBOOK_STATE_DIR: path.join(work, 'instructor'), RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl };
/** No administrator anywhere in the learner's environment: only the joined classroom. */
const learnerEnv = { ...inherited, WORKBOOK_STATE_DIR: path.join(work, 'learner-s01'), RABBITMQ_URL: 'amqp://not-the-admin:nope@localhost:1', RABBITMQ_MANAGEMENT_URL: 'http://not-the-admin:nope@localhost:1' };

const cli = runCli;

const readJson = <T>(file: string) => JSON.parse(readFileSync(file, 'utf8')) as T;
const joinFile = (s: string) => readJson<JoinFile>(path.join(classDir, 'students', `${s}.json`));

let dashboard: ChildProcess | undefined;
let dashboardOut = '';
let baseUrl = '';
let browser: Browser | undefined;
let page: Page;

/** Publishes an event to the classroom exchange as learner `s` would (their account, their user_id), or as told. */
async function publishAs(s: string, event: CheckEvent): Promise<void> {
  const j = joinFile(s);
  const host = new URL(j.amqpUrls[0]!).host;
  const conn = await amqp.connect(`amqp://${encodeURIComponent(j.user)}:${encodeURIComponent(j.password)}@${host}/${encodeURIComponent(j.classroomVhost)}`);
  try {
    const ch = await conn.createConfirmChannel();
    ch.publish(j.exchange, routingKey(event), Buffer.from(JSON.stringify(event)), { persistent: true, userId: j.user, contentType: 'application/json' });
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

const event = (learner: string, exercise: string, verdict: CheckEvent['verdict'], summary: string): CheckEvent => ({
  v: 1, learner, exercise, verdict, at: new Date().toISOString(), durationMs: 120, summary,
});

const cell = (learner: string, exercise: string) => page.locator(`#grid td[data-learner="${learner}"][data-exercise="${exercise}"]`);
const shot = (file: string) => page.screenshot({ path: path.join(artifacts, file), fullPage: true });

beforeAll(async () => {
  mkdirSync(artifacts, { recursive: true });
  const created = await cli(['classroom', 'create', '--students', '3', '--name', name, '--out', classDir], instructorEnv);
  expect(created.out).toMatch(/3 learner\(s\)/);
  const joined = await cli(['classroom', 'join', path.join(classDir, 'students', 's01.json')], learnerEnv);
  expect(joined.out).toMatch(/Joined class/);

  baseUrl = await startDashboardProcess();
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  // Anything a hostile summary manages to run shows up here.
  await page.addInitScript(() => {
    (window as unknown as { pwned: number }).pwned = 0;
  });
});

/** The instructor's command, on any free port; resolves with its address once it serves. */
async function startDashboardProcess(): Promise<string> {
  dashboardOut = '';
  const child = spawn(process.execPath, ['runner/start.mjs', 'classroom', 'dashboard', '--out', classDir, '--port', '0'], { cwd: root, env: instructorEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  dashboard = child;
  return new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      dashboardOut += plain(chunk.toString());
      const found = /http:\/\/127\.0\.0\.1:\d+\//.exec(dashboardOut);
      if (found) resolve(found[0]);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`the dashboard ended (${code}): ${dashboardOut}`)));
  });
}

async function stopDashboardProcess(): Promise<void> {
  if (!dashboard || dashboard.exitCode !== null) return;
  const ended = new Promise((r) => dashboard!.once('exit', r));
  dashboard.kill('SIGTERM');
  await ended;
}

async function logIn(): Promise<void> {
  await page.goto(baseUrl);
  await page.fill('input[name=password]', readJson<ClassFile>(path.join(classDir, 'class.json')).dashboard!.password);
  await page.click('button[type=submit]');
  await page.waitForURL(baseUrl);
}

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await stopDashboardProcess();
  const file = path.join(classDir, 'class.json');
  if (existsSync(file)) await destroyClass(admin, readJson<ClassFile>(file)).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

describe("the instructor's dashboard, in Chromium", () => {
  it('refuses a wrong password, then logs in with the one of the class file, in a cookie scripts cannot read', async () => {
    const first = await page.goto(baseUrl);
    expect(page.url()).toBe(`${baseUrl}login`);
    expect(first?.headers()['content-security-policy']).toMatch(/default-src 'none'; script-src 'self'/);
    // Nothing behind the login answers without it.
    expect((await page.request.get(`${baseUrl}events`, { headers: { accept: 'text/event-stream' } })).status()).toBe(401);

    await page.fill('input[name=password]', 'not-the-password');
    await page.click('button[type=submit]');
    await expect.poll(() => page.locator('#login-error').textContent()).toBe('Wrong password.');

    const password = readJson<ClassFile>(path.join(classDir, 'class.json')).dashboard!.password;
    await page.fill('input[name=password]', password);
    await page.click('button[type=submit]');
    await page.waitForURL(baseUrl);
    await expect.poll(() => page.locator('#status').textContent()).toMatch(/^Live · 3 learners/);
    expect(await page.locator('#grid tbody tr').count()).toBe(3);

    const [cookie] = await page.context().cookies();
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    await shot('dashboard-1-logged-in.png');
  });

  it("shows a learner's check live, without a reload", async () => {
    // A reload would start a new document without this mark.
    await page.evaluate(() => ((window as unknown as { sameDocument: boolean }).sameDocument = true));
    // Learner s01 checks 2.1: their file is the starter, so it fails (any verdict would do).
    const checked = await cli(['check', '2.1'], learnerEnv);
    expect(checked.out).toMatch(/failed/);
    expect(checked.out).not.toMatch(/dashboard did not get/);

    await expect.poll(() => cell('s01', '2.1').textContent(), { timeout: 10_000 }).toMatch(/^failed1 check · \d+ s$/);
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
    expect(await page.locator('#standing tr[data-exercise="2.1"] td').allTextContents()).toEqual(['0', '1', '2']);
    await shot('dashboard-2-live-check.png');
  });

  it('shows a hostile summary as text, runs nothing, and highlights a learner stuck after five failures', async () => {
    const hostile = `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>`;
    // Five failures of one exercise: s02 is stuck on 3.1. The last one's publish-to-screen time is measured.
    for (let i = 0; i < 4; i++) await publishAs('s02', event('s02', '3.1', 'failed', hostile));
    const started = performance.now();
    await publishAs('s02', event('s02', '3.1', 'failed', hostile));
    await page.waitForFunction(() => document.querySelector('#grid td[data-learner="s02"][data-exercise="3.1"]')?.textContent?.startsWith('failed5 checks'), undefined, { polling: 'raf', timeout: 10_000 });
    const latency = performance.now() - started;
    console.log(`dashboard latency, publish to visible in the page: ${latency.toFixed(0)} ms`);

    // Highlighted in the grid, and listed with the last summary, as text.
    expect(await cell('s02', '3.1').getAttribute('class')).toMatch(/\bstuck\b/);
    expect(await page.locator('#grid tr[data-learner="s02"]').getAttribute('class')).toMatch(/\bstuck\b/);
    expect(await page.locator('#grid tr[data-learner="s01"]').getAttribute('class')).toBeNull();
    expect(await page.locator('#stuck li[data-learner="s02"] .summary').textContent()).toBe(hostile);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('main script').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { pwned: number }).pwned)).toBe(0);
    await shot('dashboard-3-stuck-and-hostile.png');
  });

  it('ignores events that are malformed or claim another learner', async () => {
    // s03 says it is s02: the broker vouches for the user_id, the body is not believed.
    await publishAs('s03', event('s02', '2.1', 'passed', 'not me'));
    // An exercise the workbook does not have, and a verdict that does not exist.
    await publishAs('s03', event('s03', '99.9', 'passed', 'made up'));
    await publishAs('s03', { ...event('s03', '2.1', 'passed', 'x'), verdict: 'won' as CheckEvent['verdict'] });
    await expect.poll(() => page.locator('#status').textContent(), { timeout: 10_000 }).toMatch(/3 malformed event\(s\) ignored/);
    expect(await cell('s02', '2.1').textContent()).toBe('');
    expect(await cell('s03', '2.1').textContent()).toBe('');
    expect(dashboardOut).toMatch(/ignored an event: from s03: claims to be s02/);
  });

  it('rebuilds the class from the stream after a restart, with what was sent while it was down', async () => {
    await stopDashboardProcess();
    await publishAs('s03', event('s03', '3.1', 'passed', 'ok'));
    baseUrl = await startDashboardProcess();
    await logIn();
    await expect.poll(() => cell('s03', '3.1').textContent(), { timeout: 10_000 }).toMatch(/^passed1 check/);
    expect(await cell('s01', '2.1').textContent()).toMatch(/^failed1 check/);
    expect(await cell('s02', '3.1').textContent()).toMatch(/^failed5 checks/);
    expect(await page.locator('#status').textContent()).toMatch(/3 malformed event\(s\) ignored/);
    expect(await page.locator('#standing tr[data-exercise="3.1"] td').allTextContents()).toEqual(['1', '1', '1']);
    await shot('dashboard-4-after-restart.png');
  });
});
