// A broken environment is never blamed on the learner's code: every command proves the broker
// first (runner/broker/probe.ts) and ends with exit 2 and the precise cause; `doctor` runs the
// same probes and is never green on a broken set-up; and a check whose own connection to its
// vhost fails is an `error` verdict (the environment), not a failed one.
import { execFile } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify, stripVTControlCharacters as plain } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { managementFor } from '../runner/broker/management.js';
import { freePort } from '../runner/broker/ports.js';
import { jobFor, runCheck } from '../runner/check/run.js';
import { exitCodeFor } from '../runner/commands/check.js';
import { loadManifest } from '../runner/manifest/load.js';

const broker = inject('broker');
const root = path.resolve(import.meta.dirname, '..');
const { WORKBOOK_BROKER: _forced, RABBITMQ_URL: _url, RABBITMQ_MANAGEMENT_URL: _mgmt, ...inherited } = process.env;
const mgmt = managementFor(broker);

// Users this file creates, named so that a leftover is easy to recognise (and removed in afterAll).
const PREFIX = `wb-envtest-${process.pid}-`;
const PASSWORD = 'env-test-secret';
const noPermissions = `${PREFIX}no-permissions`;
const notAdministrator = `${PREFIX}not-administrator`;

const amqp = new URL(broker.amqpUrl);
/** The test broker's AMQP URL with another user and password, or on another port. */
const amqpUrl = (user = 'guest', password = 'guest', port = amqp.port || '5672') => `amqp://${user}:${password}@${amqp.hostname}:${port}`;
/** The test broker's management URL with guest's credentials in it. */
const mgmtAsGuest = broker.managementUrl.replace('://', `://${broker.username}:${broker.password}@`);

let closedPort: number;
let fakeManagement: http.Server;
let fakeUrl: string;

beforeAll(async () => {
  await mgmt.request('PUT', `/users/${encodeURIComponent(noPermissions)}`, { password: PASSWORD, tags: '' });
  await mgmt.request('PUT', `/users/${encodeURIComponent(notAdministrator)}`, { password: PASSWORD, tags: 'management' });
  closedPort = await freePort();
  // Answers like the management API of another RabbitMQ (another cluster name); /elsewhere is a web server that is not RabbitMQ.
  fakeManagement = http.createServer((req, res) => {
    const json = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/api/overview') return json({ rabbitmq_version: '3.13.7', management_version: '3.13.7', cluster_name: 'rabbit@elsewhere', node: 'rabbit@elsewhere' });
    if (req.url === '/api/whoami') return json({ name: 'guest', tags: ['administrator'] });
    res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>Not Found</h1>');
  });
  await new Promise<void>((resolve) => fakeManagement.listen(0, '127.0.0.1', resolve));
  fakeUrl = `http://127.0.0.1:${(fakeManagement.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const user of [noPermissions, notAdministrator]) await mgmt.request('DELETE', `/users/${encodeURIComponent(user)}`).catch(() => undefined);
  await new Promise((resolve) => fakeManagement?.close(resolve));
});

/** Runs the CLI against the broker these variables describe (not the test run's). */
async function cli(args: string[], env: { RABBITMQ_URL: string; RABBITMQ_MANAGEMENT_URL?: string }) {
  const state = mkdtempSync(path.join(tmpdir(), 'wb-env-'));
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['runner/start.mjs', ...args], {
      cwd: root,
      env: { ...inherited, WORKBOOK_STATE_DIR: state, ...env },
    });
    return { code: 0, out: plain(stdout + stderr) };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: plain(e.stdout + e.stderr) };
  }
}

/** check 2.1 and doctor both end with exit 2, name the cause, blame nothing on the learner's code, and never print the password. */
async function expectEnvironmentProblem(env: { RABBITMQ_URL: string; RABBITMQ_MANAGEMENT_URL?: string }, cause: RegExp, fix: RegExp) {
  for (const args of [['check', '2.1'], ['doctor']]) {
    const { code, out } = await cli(args, env);
    expect(code, `${args.join(' ')} exit code\n${out}`).toBe(2);
    expect(out).toMatch(cause);
    expect(out).toMatch(fix);
    expect(out).not.toMatch(/hard-coded|your code threw|Ready to go/);
    expect(out).not.toContain(PASSWORD);
    expect(out).not.toContain('wrong-password');
  }
}

describe('a broken environment ends with exit 2 and its cause, in check and in doctor', () => {
  it('the AMQP port is closed', async () => {
    await expectEnvironmentProblem(
      { RABBITMQ_URL: amqpUrl('guest', 'guest', String(closedPort)), RABBITMQ_MANAGEMENT_URL: broker.managementUrl },
      new RegExp(`Nothing answers at amqp://guest@${amqp.hostname}:${closedPort} \\(ECONNREFUSED\\)`),
      /correct the host and port in RABBITMQ_URL/,
    );
  });

  it('the password is wrong', async () => {
    await expectEnvironmentProblem(
      { RABBITMQ_URL: amqpUrl('guest', 'wrong-password') },
      /refused the login of user "guest" \(403 ACCESS_REFUSED\)/,
      /Correct the user and password in RABBITMQ_URL/,
    );
  });

  it('the AMQP user has no permissions on the check vhosts', async () => {
    await expectEnvironmentProblem(
      { RABBITMQ_URL: amqpUrl(noPermissions, PASSWORD), RABBITMQ_MANAGEMENT_URL: mgmtAsGuest },
      new RegExp(`RABBITMQ_URL logs in as "${noPermissions}", but the management API as "guest".*refused there \\(NOT_ALLOWED\\)`),
      /Use the same user in RABBITMQ_URL and RABBITMQ_MANAGEMENT_URL/,
    );
  });

  // RABBITMQ_MANAGEMENT_URL is named without credentials (the runner takes them from RABBITMQ_URL):
  // the test broker need not be the one on the default port 15672.
  it('the user lacks the administrator tag', async () => {
    await expectEnvironmentProblem(
      { RABBITMQ_URL: amqpUrl(notAdministrator, PASSWORD), RABBITMQ_MANAGEMENT_URL: broker.managementUrl },
      new RegExp(`User "${notAdministrator}" of the management API at .* lacks the administrator tag \\(tags: management\\)`),
      new RegExp(`rabbitmqctl set_user_tags ${notAdministrator} administrator`),
    );
  });

  it('the user has no tags at all (the management API refuses it: "Not management user")', async () => {
    await expectEnvironmentProblem(
      { RABBITMQ_URL: amqpUrl(noPermissions, PASSWORD), RABBITMQ_MANAGEMENT_URL: broker.managementUrl },
      new RegExp(`User "${noPermissions}" of the management API at .* lacks the administrator tag \\(it may not even use the management API\\)`),
      new RegExp(`rabbitmqctl set_user_tags ${noPermissions} administrator`),
    );
  });

  it('the management API belongs to another broker', async () => {
    await expectEnvironmentProblem(
      { RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: fakeUrl },
      /the management API at http:\/\/127\.0\.0\.1:\d+ belongs to another broker: RabbitMQ 3\.13\.7 \(cluster "rabbit@elsewhere"\)/,
      /Set RABBITMQ_MANAGEMENT_URL to the management API of the broker in RABBITMQ_URL/,
    );
  });

  it('the management API is off', async () => {
    await expectEnvironmentProblem(
      { RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: `http://localhost:${closedPort}` },
      new RegExp(`management API at http://localhost:${closedPort} does not answer \\(ECONNREFUSED\\)`),
      /rabbitmq-plugins enable rabbitmq_management/,
    );
  });

  it('the management URL is a web server that is not RabbitMQ', async () => {
    await expectEnvironmentProblem(
      { RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: `${fakeUrl}/elsewhere` },
      /is an HTTP server, but not RabbitMQ's management API: it has no \/api\/overview \(404\)/,
      /Set RABBITMQ_MANAGEMENT_URL to the management API of your broker/,
    );
  });

  it('doctor is green on the test broker, with every probe', async () => {
    const { code, out } = await cli(['doctor'], { RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl });
    expect(code, out).toBe(0);
    for (const line of ['AMQP port', 'AMQP login', 'Management API', 'Vhost creation', 'Same broker']) expect(out).toContain(line);
    expect(out).toMatch(/Ready to go/);
  });
});

describe('a check whose own connection to its vhost fails', () => {
  it('is an error verdict (the environment), and the CLI exit code is 2', async () => {
    // The runner's probes are bypassed here: the sandbox is opened to guest, the URL handed over logs in as a user without permissions.
    const exercise = loadManifest().exercise('2.1')!;
    const verdict = await runCheck(jobFor(exercise, 'solution'), { ...broker, amqpUrl: amqpUrl(noPermissions, PASSWORD) });
    expect(verdict.status).toBe('error');
    expect(verdict.finding?.summary).toMatch(new RegExp(`User "${noPermissions}" may not open this check's vhost "wb-.*" .*\\(530 NOT_ALLOWED`));
    expect(verdict.finding?.why).toMatch(/the environment is at fault, not your code/);
    expect(verdict.finding?.fix).toMatch(/use the same user in RABBITMQ_URL and RABBITMQ_MANAGEMENT_URL/);
    expect(exitCodeFor([verdict])).toBe(2);
  });
});
