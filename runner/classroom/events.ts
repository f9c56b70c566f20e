// A joined learner's runner tells the instructor's dashboard about each verdict on the
// learner's own code (npm run check, npm run watch): one small persistent message per verdict,
// published with the learner's account to the topic exchange of the classroom vhost, which
// learners may write to and only the instructor may read (README, "Instructors").
//
// Reporting must never cost the learner a verdict: the verdict is printed first, every publish
// has a time limit, and a broker that is slow, gone or refusing gets one dim line on stderr,
// after which the runner stops trying for a while. Events it could not send wait in memory and
// go with the next one after that (npm run watch); each carries a messageId, so one that did
// arrive after all is counted once by the dashboard.
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import pc from 'picocolors';
import { vhostUrl, type BrokerInfo } from '../broker/types.js';
import type { Verdict } from '../check/verdict.js';

/** What the dashboard receives. The dashboard validates it again (runner/dashboard/event-schema.ts): it comes from learners. */
export interface CheckEvent {
  v: 1;
  learner: string;
  exercise: string;
  verdict: 'passed' | 'failed' | 'skipped' | 'broken';
  /** When the verdict was reached (ISO 8601). */
  at: string;
  durationMs: number;
  /** The verdict's one-line summary, shortened. */
  summary: string;
  /** How many of the starter's contract lines the check observed, when it got that far. */
  contractObserved?: number;
}

/** Longest summary sent: the dashboard shows one line, and a message stays small. */
export const SUMMARY_MAX = 200;
/**
 * Connect, publish and confirm must all fit in this, or the events wait for a later try. Only the
 * end of a run waits for it (the verdicts are printed already); a class of 30 on one machine took
 * over 3 s to connect.
 */
const TIME_LIMIT_MS = 10_000;
/** Events kept for a later try, at most: the oldest go first. */
const BACKLOG_MAX = 100;
/** After a failure, the runner does not try again for this long (one line, not one per verdict). */
const QUIET_AFTER_FAILURE_MS = 60_000;

export function routingKey(e: Pick<CheckEvent, 'learner' | 'exercise'>): string {
  return `check.${e.learner}.${e.exercise}`;
}

export function eventOf(v: Verdict, learner: string, at = new Date()): CheckEvent {
  const verdict = v.status === 'error' ? 'broken' : v.status;
  const summary = v.finding?.summary ?? (v.status === 'passed' ? 'passed' : v.notes[0] ?? v.status);
  return {
    v: 1,
    learner,
    exercise: v.id,
    verdict,
    at: at.toISOString(),
    durationMs: Math.max(0, Math.round(v.durationMs)),
    summary: shorten(summary),
    ...(v.contract ? { contractObserved: new Set(v.contract.observed).size } : {}),
  };
}

/** One line, no terminal colours, at most SUMMARY_MAX characters. */
export function shorten(text: string): string {
  // eslint-disable-next-line no-control-regex
  const line = text.replace(/\u001b\[[0-9;]*m/g, '').replace(/\s+/g, ' ').trim();
  return line.length > SUMMARY_MAX ? `${line.slice(0, SUMMARY_MAX - 1)}…` : line;
}

/** An event on its way, with the messageId it keeps when sent again, and its place in the order of the verdicts. */
interface Outgoing {
  event: CheckEvent;
  messageId: string;
  seq: number;
}

/** Publishes check events for a joined classroom; does nothing at all when no classroom is joined. */
export class CheckEvents {
  private conn?: Promise<amqp.ChannelModel>;
  private channel?: Promise<amqp.ConfirmChannel>;
  private pending = new Set<Promise<void>>();
  private quietUntil = 0;
  /** Events not confirmed yet by the broker, oldest first. */
  private backlog: Outgoing[] = [];
  private reported = 0;

  constructor(
    private readonly broker: BrokerInfo,
    private readonly timeLimitMs = TIME_LIMIT_MS,
  ) {}

  /** Starts publishing the event of `v` (and any kept from before) and returns at once; failures are logged, never thrown. */
  report(v: Verdict): void {
    const seat = this.broker.classroom;
    if (!seat) return;
    this.backlog.push({ event: eventOf(v, seat.student), messageId: randomUUID(), seq: this.reported++ });
    this.backlog.splice(0, this.backlog.length - BACKLOG_MAX);
    if (Date.now() < this.quietUntil) return;
    const batch = this.backlog.splice(0);
    const done = withTimeLimit(this.publish(batch), this.timeLimitMs)
      .catch((err: Error) => {
        // Several verdicts on their way when the broker fails: one line says it for all.
        const said = Date.now() < this.quietUntil;
        this.quietUntil = Date.now() + QUIET_AFTER_FAILURE_MS;
        // Back in the order of the verdicts: the batches on their way fail in any order.
        this.backlog = [...batch, ...this.backlog].sort((a, b) => a.seq - b.seq);
        this.backlog.splice(0, this.backlog.length - BACKLOG_MAX);
        this.drop();
        if (!said) console.error(pc.dim(`(Your instructor's dashboard did not get this verdict: ${err.message}. Your verdict is not affected.)`));
      })
      .finally(() => this.pending.delete(done));
    this.pending.add(done);
  }

  /** Waits for the events still on their way (each is time-limited), then closes the connection. */
  async close(): Promise<void> {
    await Promise.all(this.pending);
    const conn = this.conn;
    this.conn = this.channel = undefined;
    if (conn) await withTimeLimit(conn.then((c) => c.close()), this.timeLimitMs).catch(() => undefined);
  }

  private async publish(batch: Outgoing[]): Promise<void> {
    const seat = this.broker.classroom!;
    const ch = await this.openChannel(seat.classroomVhost);
    for (const { event, messageId } of batch) {
      ch.publish(seat.exchange, routingKey(event), Buffer.from(JSON.stringify(event)), {
        persistent: true,
        contentType: 'application/json',
        type: 'workbook.check',
        messageId,
        // The broker refuses a user_id that is not the connection's own user: the dashboard
        // trusts this property, not the body, to know which learner sent the event.
        userId: this.broker.username,
        timestamp: Math.floor(Date.parse(event.at) / 1000),
      });
    }
    await ch.waitForConfirms();
  }

  private openChannel(vhost: string): Promise<amqp.ConfirmChannel> {
    if (!this.conn) {
      const conn = amqp.connect(vhostUrl(this.broker, vhost), { timeout: this.timeLimitMs, clientProperties: { connection_name: `workbook check events (${this.broker.username})` } }).then((c) => {
        // A refused publish closes the channel (and is reported by waitForConfirms); these only keep Node from crashing.
        c.on('error', () => undefined);
        // Closed by the broker (or the network): the next report opens a new one.
        c.on('close', () => {
          if (this.conn === conn) this.conn = this.channel = undefined;
        });
        return c;
      });
      this.conn = conn;
    }
    this.channel ??= this.conn.then(async (c) => {
      const ch = await c.createConfirmChannel();
      ch.on('error', () => undefined);
      ch.on('close', () => (this.channel = undefined));
      return ch;
    });
    return this.channel;
  }

  /** Forgets the connection (closed, failed or too slow): the next report opens a new one. */
  private drop(): void {
    const conn = this.conn;
    this.conn = this.channel = undefined;
    void conn?.then((c) => c.close()).catch(() => undefined);
  }
}

function withTimeLimit<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the classroom broker within ${ms / 1000} s`)), ms);
    timer.unref();
  });
  return Promise.race([work, limit]).finally(() => clearTimeout(timer));
}
