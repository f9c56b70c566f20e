// Check 5.6: connectWithHeartbeat(url, 5) runs with a 5 s heartbeat, and connectWithHeartbeat(url)
// with the broker's proposal, as the broker reports them (the connection's "timeout"). The checker
// plays a broker that proposes 90 s (not the usual 60, which a hard-coded default would match),
// and hands over a URL with a query already (?locale=en_US). Both connections come back open; the
// checker then resets them, and the process must survive it.
import type { ChannelModel } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import type { ConnectionInfo } from '../../runner/broker/management.js';
import type * as Exercise from '../../exercises/05-consumers/06-heartbeat.js';
import { connectionsSince } from '../../runner/check/frames.js';
import { expectSurvivesReset, learnerConnectionsOpen, proposeHeartbeat } from './support.js';

const localPort = (c: ChannelModel) => (c.connection as unknown as { stream?: { localPort?: number } }).stream?.localPort;
/** What connectWithHeartbeat() returned, if it is an open amqplib connection (a ChannelModel). */
const isConnection = (c: unknown): c is ChannelModel => typeof (c as ChannelModel | undefined)?.close === 'function' && typeof (c as ChannelModel).createChannel === 'function';

export default defineCheck<typeof Exercise>(async (t) => {
  const seconds = 5;
  const proposed = 90;
  // A URL with a query of its own: the heartbeat is one more parameter, not a second '?'.
  const url = `${t.url}?locale=en_US`;
  // The checker's own connection states no preference: its heartbeat is the broker's own proposal.
  await (await t.channel()).close();
  const broker = proposeHeartbeat(t, proposed);

  t.provoke([1, 2], `plays a broker that proposes a heartbeat of ${proposed} s (as heartbeat = ${proposed} in rabbitmq.conf would) to your connections`);
  t.provoke(1, `called connectWithHeartbeat("…/${t.vhost}?locale=en_US", ${seconds})`);
  const asked: unknown = await t.call(`connectWithHeartbeat(url, ${seconds})`, () => t.target.connectWithHeartbeat(url, seconds));
  t.provoke(2, 'called connectWithHeartbeat(url), with no heartbeat');
  const plain: unknown = await t.call('connectWithHeartbeat(url)', () => t.target.connectWithHeartbeat(url)).finally(broker.dispose);
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
    // The broker's proposal as your connection read it: the checker's, where its handshake went by unchanged.
    const proposalTo = (port: number | undefined) => (broker.proposedTo(port) ? proposed : (checker.timeout ?? 0));
    const proposal = proposalTo(ports[1]);
    t.log(`the broker proposed ${proposalTo(ports[0])} s and ${proposal} s; your connections run with ${a.timeout} s and ${p.timeout} s`);
    const heartbeatOf = (c: ConnectionInfo) => c.timeout ?? 0;
    const locale = connectionsSince().find((c) => c.socket.localPort === ports[0])?.locale;

    if (heartbeatOf(a) !== seconds && locale?.includes('heartbeat')) {
      t.fail({
        summary: `connectWithHeartbeat(url, ${seconds}) runs with a heartbeat of ${heartbeatOf(a)} s, the broker's proposal: "heartbeat=${seconds}" ended up inside the URL's locale, not as a parameter of its own.`,
        expected: `…?locale=en_US&heartbeat=${seconds}: heartbeat ${seconds} s`,
        saw: `the locale your connection sent: ${JSON.stringify(locale)}; heartbeat ${heartbeatOf(a)} s`,
        why: "The URL you are given may carry a query already (here ?locale=en_US). Appending '?heartbeat=…' to it starts no new parameter: a second '?' is just a character of the locale's value, and the heartbeat you asked for never reaches the broker.",
        fix: `const target = new URL(url); target.searchParams.set('heartbeat', String(seconds)); amqp.connect(target.href)`,
        link: t.ui('connections'),
      });
    }
    if (heartbeatOf(a) !== seconds) {
      const got = heartbeatOf(a);
      const proposal = proposalTo(ports[0]);
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
            : got === 60 && proposal !== 60
              ? `With no value asked for, the client accepts what the broker proposes. 60 s is RabbitMQ's usual proposal, not a rule: this broker proposed ${proposal} s (as one with heartbeat = ${proposal} in rabbitmq.conf does), and your code asked for 60 s of its own.`
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
