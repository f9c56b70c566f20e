// Check 5.6: connectWithHeartbeat(url, 5) runs with a 5 s heartbeat, and connectWithHeartbeat(url)
// with the broker's own proposal, as the broker reports them (the connection's "timeout"). Both
// come back open; the checker then resets them, and the process must survive it.
import type { ChannelModel } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import type { ConnectionInfo } from '../../runner/broker/management.js';
import type * as Exercise from '../../exercises/05-consumers/06-heartbeat.js';
import { expectSurvivesReset, learnerConnectionsOpen } from './support.js';

const localPort = (c: ChannelModel) => (c.connection as unknown as { stream?: { localPort?: number } }).stream?.localPort;
/** What connectWithHeartbeat() returned, if it is an open amqplib connection (a ChannelModel). */
const isConnection = (c: unknown): c is ChannelModel => typeof (c as ChannelModel | undefined)?.close === 'function' && typeof (c as ChannelModel).createChannel === 'function';

export default defineCheck<typeof Exercise>(async (t) => {
  const seconds = 5;
  // The checker's own connection states no preference: its heartbeat is the broker's proposal.
  await (await t.channel()).close();

  t.provoke(1, `called connectWithHeartbeat(url, ${seconds})`);
  const asked: unknown = await t.call(`connectWithHeartbeat(url, ${seconds})`, () => t.target.connectWithHeartbeat(t.url, seconds));
  t.provoke(2, 'called connectWithHeartbeat(url), with no heartbeat');
  const plain: unknown = await t.call('connectWithHeartbeat(url)', () => t.target.connectWithHeartbeat(t.url));
  for (const [label, c] of [[`connectWithHeartbeat(url, ${seconds})`, asked], ['connectWithHeartbeat(url)', plain]] as const) {
    if (!isConnection(c)) {
      t.fail({
        summary: `${label} did not return the connection: it returned ${c === undefined ? 'nothing' : typeof c === 'object' ? 'an object that is not an amqplib connection' : JSON.stringify(c)}.`,
        expected: 'the connection that amqp.connect() resolved with',
        saw: c === undefined ? 'undefined' : String(c),
        why: 'The caller needs the connection itself: to open channels on it, and to close it when done.',
        fix: 'const connection = await amqp.connect(target.href); connection.on(\'error\', …); return connection;',
      });
    }
  }
  if (!isConnection(asked) || !isConnection(plain)) return;
  if (learnerConnectionsOpen(t) < 2) {
    t.fail({
      summary: `connectWithHeartbeat() returned connections that are already closed (${learnerConnectionsOpen(t)} of 2 open).`,
      expected: 'both connections returned open',
      saw: `${learnerConnectionsOpen(t)} open`,
      why: 'The function hands the connection over: the caller uses it, and closes it when done. Closed before it is returned (a finally block, say), it is good for nothing.',
      fix: 'Return the connection without closing it.',
    });
  }
  try {
    const ports = [localPort(asked), localPort(plain)];
    // The management API lists connections after a statistics tick (1 to 5 s).
    const listed = await t.waitFor(
      async () => {
        const all = await t.mgmt.connections(t.vhost);
        const checker = all.find((c) => c.client_properties?.connection_name === 'workbook checker');
        const mine = ports.map((p) => all.find((c) => c.peer_port === p));
        return checker && mine[0] && mine[1] ? { checker, asked: mine[0], plain: mine[1] } : undefined;
      },
      8000,
      200,
    );
    if (!listed) {
      t.fail({
        summary: 'The management API did not list the connections within 8 s.',
        why: 'The checker reads the heartbeat the broker agreed on from the connection list, which is updated on a statistics tick.',
        fix: 'Return the connection that amqp.connect() gave you, open. Then run the check again.',
        link: t.ui('connections'),
      });
    }
    const { checker, asked: a, plain: p } = listed!;
    t.observe(3, 'the management API lists both your connections, open, after the calls returned');
    const proposal = checker.timeout ?? 0;
    t.log(`the broker proposes a heartbeat of ${proposal} s; your connections run with ${a.timeout} s and ${p.timeout} s`);
    const heartbeatOf = (c: ConnectionInfo) => c.timeout ?? 0;

    if (heartbeatOf(a) !== seconds) {
      const got = heartbeatOf(a);
      t.fail({
        summary:
          got === 0
            ? `connectWithHeartbeat(url, ${seconds}) runs with heartbeats disabled (0), not ${seconds} s.`
            : got === proposal
              ? `connectWithHeartbeat(url, ${seconds}) runs with a heartbeat of ${got} s, the broker's proposal, not ${seconds} s.`
              : `connectWithHeartbeat(url, ${seconds}) runs with a heartbeat of ${got} s, not ${seconds} s.`,
        expected: `heartbeat (the connection's "timeout") ${seconds} s`,
        saw: `${got} s`,
        why:
          got === proposal
            ? `Client and broker each propose a value and the lower non-zero one wins. ${proposal} s means your ${seconds} never reached the broker, or was larger than ${proposal}: amqplib reads the heartbeat from the URL, in seconds. In the second argument of connect() (socket options) it is ignored, and ${seconds * 1000} (milliseconds) loses to ${proposal}.`
            : 'The heartbeat is a whole number of seconds, read from the URL (?heartbeat=N) or from a URL object.',
        fix: `const target = new URL(url); target.searchParams.set('heartbeat', String(seconds)); amqp.connect(target.href)`,
        link: t.ui('connections'),
      });
    }
    t.observe(1, `read from the broker: your connection asked for ${seconds} s runs with a heartbeat of ${heartbeatOf(a)} s`);
    if (heartbeatOf(p) !== proposal) {
      const got = heartbeatOf(p);
      t.fail({
        summary:
          got === 0
            ? `connectWithHeartbeat(url) runs with heartbeats disabled (0): "no preference" must leave the broker's ${proposal} s.`
            : `connectWithHeartbeat(url) runs with a heartbeat of ${got} s instead of the broker's proposal (${proposal} s).`,
        expected: `the broker's proposal, ${proposal} s`,
        saw: `${got} s`,
        why:
          got === 0
            ? 'Since amqplib 2.0, heartbeat 0 switches heartbeats off (before, it meant "no preference"). Without heartbeats a connection whose peer vanished (a cable pulled, a VM frozen, a NAT entry dropped) looks alive for a long time: messages wait on a consumer that is gone.'
            : 'With no value asked for, the client should accept what the broker proposes.',
        fix: 'When seconds is undefined, leave the heartbeat out of the URL altogether.',
        link: t.ui('connections'),
      });
    }
    t.observe(2, `read from the broker: your connection with no preference runs with the broker's proposal, ${proposal} s`);
    // A lost connection, as the caller would meet it: the 'error' must be heard.
    await expectSurvivesReset(t, [3], 'of both connections');
    t.note(`Your connections: ${seconds} s when asked, ${proposal} s (the broker's proposal) otherwise. A peer that goes silent is declared dead after about two heartbeats.`);
  } finally {
    await asked.close().catch(() => undefined);
    await plain.close().catch(() => undefined);
  }
});
