// npx tsx bench/dashboard-load.ts [--learners 30] [--exercises 5]
// The dashboard's side of a full class: a class of N learners on the runner's broker (as its
// administrator), the dashboard in this process, the page in headless Chromium, and every
// learner's runner reporting one verdict per exercise at the same moment, each through its
// own account and connection (runner/classroom/events.ts, as `npm run check` does). Prints
// how long each verdict took from publish to the page (the target: ≤ 1 s) and whether
// all N learners show. It does not run the learners' checks themselves: that is the load
// test's other half (p95 verdict time with 30 runners at once), bench/classroom-load.ts.
// The class has a random name and is destroyed at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { findBroker } from '../runner/broker/find.js';
import { ManagementClient } from '../runner/broker/management.js';
import { createClass, destroyClass, joinFileOf } from '../runner/classroom/provision.js';
import { seatTarget } from '../runner/classroom/seat.js';
import { CheckEvents } from '../runner/classroom/events.js';
import { runDashboard } from '../runner/dashboard/run.js';
import type { Verdict } from '../runner/check/verdict.js';

const { values } = parseArgs({ options: { learners: { type: 'string', default: '30' }, exercises: { type: 'string', default: '5' } } });
const learners = Number(values.learners);
const ids = ['2.1', '2.2', '2.3', '3.1', '3.2', '3.3', '4.1', '4.2'].slice(0, Number(values.exercises));

const b = await findBroker({ ignoreClassroom: true, start: false });
const admin = new ManagementClient(b.managementUrl, b.username, b.password);
const dir = mkdtempSync(path.join(tmpdir(), 'wb-dashboard-load-'));
const name = `load${randomBytes(2).toString('hex')}`;
const amqpUrl = new URL(b.amqpUrl);
let cls;
let dashboard: Awaited<ReturnType<typeof runDashboard>> | undefined;
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
try {
  const made = Date.now();
  cls = await createClass({ admin, name, students: learners, cluster: false, amqpUrls: [`${amqpUrl.protocol}//${amqpUrl.host}`], managementUrl: b.managementUrl, dir });
  console.log(`class ${name}: ${learners} learners provisioned in ${((Date.now() - made) / 1000).toFixed(1)} s`);
  dashboard = await runDashboard(dir, cls, { port: 0, host: '127.0.0.1' });

  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(dashboard.url);
  await page.fill('input[name=password]', cls.dashboard!.password);
  await page.click('button[type=submit]');
  await page.waitForURL(dashboard.url);
  await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('Live'));
  // The page notes when it first shows each learner's verdict of each exercise (its own clock: the same machine's).
  await page.evaluate(() => {
    const seen: Record<string, number> = ((window as unknown as { seen: Record<string, number> }).seen = {});
    new MutationObserver(() => {
      for (const td of document.querySelectorAll<HTMLElement>('#grid td.cell')) {
        const k = `${td.dataset.learner} ${td.dataset.exercise}`;
        if (td.textContent && !(k in seen)) seen[k] = Date.now();
      }
    }).observe(document.querySelector('#grid tbody')!, { childList: true, subtree: true });
  });

  // Every learner's runner, each with its own account and connection, reports at once.
  const runners = cls.students.map((s) => new CheckEvents({ ...seatTarget(joinFileOf(cls!, s)), version: b.version }));
  const sent: Record<string, number> = {};
  const verdict = (id: string, status: Verdict['status']): Verdict => ({ id, title: id, target: 'exercise', targetPath: '', status, steps: [], notes: [], durationMs: 300, finding: status === 'failed' ? { summary: 'expected a durable queue' } : undefined });
  await Promise.all(runners.map(async (r, i) => {
    for (const [n, id] of ids.entries()) {
      sent[`${cls!.students[i]!.id} ${id}`] = Date.now();
      r.report(verdict(id, n === ids.length - 1 ? 'failed' : 'passed'));
    }
    await r.close();
  }));
  const total = learners * ids.length;
  await page.waitForFunction((n) => Object.keys((window as unknown as { seen: object }).seen).length >= n, total, { timeout: 30_000 });
  const seen = await page.evaluate(() => (window as unknown as { seen: Record<string, number> }).seen);
  const latencies = Object.entries(sent).map(([k, t]) => seen[k]! - t).sort((a, c) => a - c);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)]!;
  const rows = await page.locator('#grid tbody tr').count();
  await page.screenshot({ path: path.join(process.cwd(), '.workbook', 'artifacts', `dashboard-load-${learners}.png`), fullPage: true });
  console.log(`${total} verdicts from ${learners} learners at once; ${rows} learners in the grid, ${Object.keys(seen).length} cells filled`);
  console.log(`publish to page: median ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${latencies.at(-1)} ms (target ≤ 1000 ms)`);
} finally {
  await browser.close();
  await dashboard?.close();
  if (cls) await destroyClass(admin, cls);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
