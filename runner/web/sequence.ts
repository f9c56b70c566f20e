// Draws a check's message flow (check/flow.ts) as a sequence diagram in SVG, built on the
// server: one lifeline per connection and channel of the code under check, one for the
// broker, an arrow per method in time order. Repeats in a row collapse into one arrow
// ("basic.publish ×120"), so a flow of hundreds of events stays readable. Every text drawn
// comes from the code under check or the broker, so all of it is escaped.
import type { Flow, FlowEvent } from '../check/flow.js';
import { escapeHtml as esc } from './html.js';

/** Arguments that tell two flows apart; delivery tags, reply texts and bodies differ from run to run. */
const COMPARED = ['exchange', 'type', 'queue', 'routingKey', 'source', 'destination', 'prefetch', 'global', 'noAck', 'mandatory', 'multiple', 'requeue', 'code'];
const args = (e: FlowEvent) => JSON.stringify(COMPARED.map((k) => e.fields?.[k]));

/** Consecutive events of one lifeline, direction and method, drawn as one arrow. */
export interface Row {
  event: FlowEvent;
  count: number;
  /** Index of its first event in the flow. */
  from: number;
  /** The delivery tags it spans, when its events carry one. */
  tags?: [number, number];
}

export function collapse(events: FlowEvent[]): Row[] {
  const rows: Row[] = [];
  events.forEach((e, i) => {
    const last = rows.at(-1);
    const tag = typeof e.fields?.tag === 'number' ? e.fields.tag : undefined;
    if (last && last.event.conn === e.conn && last.event.channel === e.channel && last.event.dir === e.dir && last.event.method === e.method && args(last.event) === args(e)) {
      last.count++;
      if (tag !== undefined && last.tags) last.tags = [Math.min(last.tags[0], tag), Math.max(last.tags[1], tag)];
      return;
    }
    rows.push({ event: e, count: 1, from: i, tags: tag === undefined ? undefined : [tag, tag] });
  });
  return rows;
}


export interface Difference {
  /** Index of the first event that differs, in each flow (the shorter flow's length when it ended first). */
  learner: number;
  reference: number;
  /** methods: the sequence of methods differs there; arguments: the same methods, different arguments. */
  kind: 'methods' | 'arguments';
}

/**
 * Where two flows first part: by the sequence of methods and their directions (times, delivery
 * tags and lifelines aside), and when that is the same, by the arguments that matter.
 * Undefined when they do not differ.
 */
export function firstDifference(learner: FlowEvent[], reference: FlowEvent[]): Difference | undefined {
  const key = (e: FlowEvent) => `${e.dir} ${e.method}`;
  const n = Math.min(learner.length, reference.length);
  for (let i = 0; i < n; i++) if (key(learner[i]!) !== key(reference[i]!)) return { learner: i, reference: i, kind: 'methods' };
  if (learner.length !== reference.length) return { learner: n, reference: n, kind: 'methods' };
  for (let i = 0; i < n; i++) if (args(learner[i]!) !== args(reference[i]!)) return { learner: i, reference: i, kind: 'arguments' };
  return undefined;
}

/** Shorter names for the arguments, in the labels. */
const LABELS: Record<string, string> = { routingKey: 'key' };

/** What an arrow says: the method and its arguments, the message id and the start of its body. */
export function describe(row: Row): string {
  const e = row.event;
  const parts = [e.method + (row.count > 1 ? ` ×${row.count}` : '')];
  for (const [k, v] of Object.entries(e.fields ?? {})) {
    if (k === 'tag' && row.tags) parts.push(row.tags[0] === row.tags[1] ? `tag ${v}` : `tags ${row.tags[0]}–${row.tags[1]}`);
    else if (k === 'text' && e.fields?.code === 200) continue; // a normal close: its text says nothing
    else parts.push(typeof v === 'string' ? `${LABELS[k] ?? k} ${JSON.stringify(v)}` : v === true ? k : `${LABELS[k] ?? k} ${v}`);
  }
  if (e.messageId !== undefined) parts.push(`id ${JSON.stringify(e.messageId)}`);
  // JSON.stringify turns control characters into \n, \u0000…: an SVG may not hold them even escaped.
  if (e.body !== undefined) parts.push(`body ${JSON.stringify(e.body)}`);
  return parts.join(' · ');
}

// A monospace font, so widths are known without a browser.
const CHAR = 7.2;
const TIME_W = 70;
const LANE_GAP = 62;
const ARROW_W = 360;
const HEAD = 46;
const ROW = 30;

/** A lifeline per connection and channel; a connection's own methods (channel 0) go on its first channel's. */
function lanes(events: FlowEvent[]): { keys: string[]; laneOf: (e: FlowEvent) => number } {
  const keys: string[] = [];
  const firstChannel = new Map<number, number>();
  for (const e of events) if (e.channel !== 0 && !firstChannel.has(e.conn)) firstChannel.set(e.conn, e.channel);
  const keyOf = (e: FlowEvent) => `${e.conn}.${e.channel === 0 ? firstChannel.get(e.conn) ?? 0 : e.channel}`;
  for (const e of events) if (!keys.includes(keyOf(e))) keys.push(keyOf(e));
  return { keys, laneOf: (e) => keys.indexOf(keyOf(e)) };
}

/** The flow as an SVG sequence diagram; `highlight` (an event's index) marks the row holding it. */
export function renderSequence(flow: Flow, title: string, highlight?: number): string {
  if (flow.events.length === 0) return `<p class="empty">No AMQP method was recorded: the code opened no connection, or sent nothing on it.</p>`;
  const rows = collapse(flow.events);
  // The checker's steps go between the arrows, where they happened.
  const items: ({ row: Row } | { note: string; t: number })[] = [];
  const notes = [...(flow.notes ?? [])];
  for (const row of rows) {
    while (notes.length && notes[0]!.t <= row.event.t) items.push({ note: notes[0]!.text, t: notes.shift()!.t });
    items.push({ row });
  }
  for (const n of notes) items.push({ note: n.text, t: n.t });
  const { keys, laneOf } = lanes(flow.events);
  const laneX = (i: number) => TIME_W + 30 + i * LANE_GAP;
  const brokerX = laneX(keys.length - 1) + ARROW_W;
  // Labels may run past the broker's lifeline: the arguments that differ are often at their end.
  const width = brokerX + 220;
  let marked = highlight === undefined ? -1 : items.findIndex((it) => 'row' in it && highlight >= it.row.from && highlight < it.row.from + it.row.count);
  // Past the end of the flow (the other one went on): the mark goes under the last row.
  const ended = highlight !== undefined && marked === -1;
  if (ended) marked = items.length;
  const height = HEAD + (items.length + (ended ? 1 : 0)) * ROW + 16;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="sequence" width="${width}" height="${height}" role="img" aria-label="${esc(title)}">`,
    '<defs><marker id="seq-head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="seq-head"/></marker></defs>',
  ];
  if (marked >= 0) out.push(`<rect class="difference" x="0" y="${HEAD + marked * ROW - 4}" width="${width}" height="${ROW}"/>`);
  // Lifelines and their names.
  const names = keys.map((k, i) => {
    const [conn, channel] = k.split('.');
    return { x: laneX(i), label: [`conn ${conn}`, channel === '0' ? '' : `ch ${channel}`] };
  });
  names.push({ x: brokerX, label: ['broker', ''] });
  for (const n of names) {
    out.push(`<line class="lifeline" x1="${n.x}" y1="${HEAD - 8}" x2="${n.x}" y2="${height}"/>`);
    out.push(`<text class="lane" x="${n.x}" y="14" text-anchor="middle">${esc(n.label[0]!)}</text>`);
    if (n.label[1]) out.push(`<text class="lane" x="${n.x}" y="28" text-anchor="middle">${esc(n.label[1])}</text>`);
  }
  const fit = (text: string, room: number) => (text.length > room ? `${text.slice(0, room - 1)}…` : text);
  const time = (t: number) => `+${(t / 1000).toFixed(3)}s`;
  items.forEach((item, i) => {
    const y = HEAD + i * ROW;
    if ('note' in item) {
      out.push(`<g class="note"><title>${esc(`${time(item.t)} · the checker: ${item.note}`)}</title><text class="time" x="${TIME_W}" y="${y + 14}" text-anchor="end">${time(item.t)}</text><text class="note" x="${laneX(0) + 6}" y="${y + 14}">${esc(fit(`checker: ${item.note}`, Math.floor((width - laneX(0) - 12) / CHAR)))}</text></g>`);
      return;
    }
    const { row } = item;
    const e = row.event;
    const x = laneX(laneOf(e));
    const text = describe(row);
    const failed = typeof e.fields?.code === 'number' && e.fields.code !== 200;
    const cls = `arrow ${e.dir}${failed ? ' failed' : ''}${i === marked ? ' marked' : ''}`;
    const [x1, x2] = e.dir === 'out' ? [x, brokerX] : [brokerX, x];
    out.push(
      `<g class="${cls}" data-method="${esc(e.method)}"><title>${esc(`${time(e.t)} · conn ${e.conn} ch ${e.channel} · ${e.dir === 'out' ? '→ broker' : '← broker'} · ${text}`)}</title>` +
        `<text class="time" x="${TIME_W}" y="${y + 14}" text-anchor="end">${time(e.t)}</text>` +
        `<text class="label" x="${x + 6}" y="${y + 8}">${esc(fit(text, Math.floor((width - x - 12) / CHAR)))}</text>` +
        `<line x1="${x1}" y1="${y + 14}" x2="${x2}" y2="${y + 14}" marker-end="url(#seq-head)"/></g>`,
    );
  });
  if (ended) out.push(`<text class="label ended" x="${laneX(0) + 6}" y="${HEAD + items.length * ROW + 12}">(the flow ends here; the other goes on)</text>`);
  out.push('</svg>');
  return out.join('\n');
}

export const SEQUENCE_CSS = `
.trace-pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; } .trace-pair > section { min-width: 0; }
.trace-pair .diagram { overflow: auto; max-height: 80vh; border: 1px solid #d0d7de; background: #fff; }
svg.sequence text { font: 12px ui-monospace, monospace; fill: #1d232b; } svg.sequence text.lane { font-weight: 700; }
svg.sequence text.time { fill: #6e7781; } svg.sequence .lifeline { stroke: #d0d7de; stroke-dasharray: 4 3; }
svg.sequence .arrow line { stroke-width: 1.5; } svg.sequence .arrow.out line { stroke: #0969da; } svg.sequence .arrow.in line { stroke: #8250df; }
svg.sequence .arrow.failed line { stroke: #cf222e; } svg.sequence .arrow.failed text.label { fill: #cf222e; }
svg.sequence .seq-head { fill: #57606a; } svg.sequence rect.difference { fill: #fff1c2; } svg.sequence .marked text { font-weight: 700; }
svg.sequence text.ended { fill: #9a6700; font-style: italic; } svg.sequence text.note { fill: #57606a; font-style: italic; }
.first-difference { background: #fff1c2; padding: .4em .8em; border-radius: 4px; }
`;
