// Check 5.6: connectWithHeartbeat(url, 5) runs with a 5 s heartbeat, and connectWithHeartbeat(url)
// with the broker's own proposal, as the broker reports them (the connection's "timeout").
import type { ChannelModel } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import type { ConnectionInfo } from '../../runner/broker/management.js';
import type * as Exercise from '../../exercises/05-consumers/06-heartbeat.js';

const localPort = (c: ChannelModel) => (c.connection as unknown as { stream?: { localPort?: number } }).stream?.localPort;

export default defineCheck<typeof Exercise>(async (t) => {
  const seconds = 5;
  // The checker's own connection states no preference: its heartbeat is the broker's proposal.
  await (await t.channel()).close();

  const asked = await t.call(`connectWithHeartbeat(url, ${seconds})`, () => t.target.connectWithHeartbeat(t.url, seconds));
  const plain = await t.call('connectWithHeartbeat(url)', () => t.target.connectWithHeartbeat(t.url));
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
    t.note(`Your connections: ${seconds} s when asked, ${proposal} s (the broker's proposal) otherwise. A peer that goes silent is declared dead after about two heartbeats.`);
  } finally {
    await asked.close().catch(() => undefined);
    await plain.close().catch(() => undefined);
  }
});
