// The web reader (npm run web): an Express 5 app on 127.0.0.1 only, for the learner on this
// machine. The chapters with each exercise's status, and a live diagram of a vhost: a
// chapter's demo vhost, or the sandbox the learner's last failed check kept.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type Request, type Response } from 'express';
import { enc, managementFor, type ManagementClient } from '../broker/management.js';
import type { BrokerInfo } from '../broker/types.js';
import { keptVhosts } from '../check/kept.js';
import { hasTrace, readTrace } from '../check/trace.js';
import { demoVhost } from '../chapter/demo.js';
import { loadManifest } from '../manifest/load.js';
import { loadProgress } from '../progress.js';
import { chapterHtml } from './chapter-html.js';
import { renderDiagram } from './diagram.js';
import { SEQUENCE_CSS } from './sequence.js';
import { tracePage } from './trace-page.js';
import { escapeHtml as esc, publicUrl } from './html.js';
import { LiveTopology } from './live.js';
import { chapterListPage, chapterPage, exerciseBlock, layout, READER_CSS, topologyPage } from './pages.js';
import { resolveExercise, sameSource, sourceKey, type Choice, type Source } from './sources.js';
import { buildTopology, readRawTopology, type TopologyNode } from './topology.js';

export interface WebOptions {
  port: number;
  /** Undefined when no broker could be used: the chapters still show, the diagram says why not. */
  broker?: BrokerInfo;
  brokerProblem?: string;
  /** More vhosts for the list (npm run web -- --vhost NAME). */
  extraVhosts?: string[];
  /** How often a listened-to vhost is polled (ms). */
  intervalMs?: number;
  /** Where the traces of failed checks are read (check/trace.ts; tests use their own). */
  tracesDir?: string;
}

export interface WebServer {
  url: string;
  live: LiveTopology;
  close(): Promise<void>;
}

export async function startWebServer(opts: WebOptions): Promise<WebServer> {
  const mgmt = opts.broker ? managementFor(opts.broker) : undefined;
  const ui = opts.broker ? publicUrl(opts.broker.managementUrl) : 'http://localhost:15672';
  const vhostUi = (vhost: string) => `${ui}/#/vhosts/${enc(vhost)}`;
  const objectUi = (vhost: string) => (n: TopologyNode) =>
    n.kind === 'queue' ? `${ui}/#/queues/${enc(vhost)}/${enc(n.name)}` : n.kind === 'exchange' ? `${ui}/#/exchanges/${enc(vhost)}/${enc(n.name)}` : undefined;
  // The poll is keyed by source: a page following an exercise follows it from one check's sandbox to the next.
  const sources = new Map<string, Source>();
  const live = new LiveTopology((key) => snapshot(mgmt, sources.get(key)!, objectUi), opts.intervalMs ?? 1000);
  const hljsCss = readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve('highlight.js/package.json')), 'styles', 'github.css'), 'utf8');

  const app = express();
  app.disable('x-powered-by');
  app.get('/static/reader.css', (_req, res) => void res.type('css').send(READER_CSS + SEQUENCE_CSS));
  app.get('/static/hljs.css', (_req, res) => void res.type('css').send(hljsCss));

  // The manifest and the progress are read at each request: a check in another terminal shows at the next reload.
  app.get('/', (_req, res) => void res.type('html').send(chapterListPage(loadManifest(), loadProgress())));

  app.get('/chapters/:n', (req, res) => {
    const chapter = loadManifest().chapter(Number(req.params.n));
    if (!chapter) return void res.status(404).type('html').send(layout('Not found', `<p>There is no chapter ${esc(req.params.n)}. <a href="/">All chapters</a></p>`));
    const progress = loadProgress();
    const kept = keptVhosts.byExercise();
    const blocks = new Map(chapter.exercises.map((e) => [e.id, e]));
    const html = chapterHtml(chapter, (id) => {
      const e = blocks.get(id);
      return e ? exerciseBlock(e, progress, kept[id], vhostUi, hasTrace(id, opts.tracesDir)) : '';
    });
    const vhost = opts.broker?.classroom?.demoVhost ?? demoVhost(chapter);
    res.type('html').send(chapterPage(chapter, progress, html, { vhost, ui: `${ui}/#/queues`, exchangesUi: `${ui}/#/exchanges` }));
  });

  // The message flow of the last failed check of an exercise, beside the reference solution's (check/trace.ts).
  app.get('/trace/:id', (req, res) => {
    const exercise = loadManifest().exercise(req.params.id);
    if (!exercise) return void res.status(404).type('html').send(layout('Not found', `<p>There is no exercise ${esc(req.params.id)}. <a href="/">All chapters</a></p>`));
    res.type('html').send(tracePage(exercise, readTrace(exercise.id, opts.tracesDir)));
  });

  app.get('/topology', async (req, res) => {
    const choices = await topologyChoices(opts, mgmt);
    const asked = askedSource(req);
    if (asked && !allowed(asked, choices, opts)) return void notListed(res, asked);
    const selected = asked ?? choices[0]?.source;
    const links = selected?.kind === 'vhost' ? { queues: vhostUi(selected.vhost), exchanges: `${ui}/#/exchanges` } : undefined;
    res.type('html').send(topologyPage(choices, selected, links, opts.brokerProblem));
  });

  app.get('/topology/events', async (req: Request, res: Response) => {
    const asked = askedSource(req);
    if (!asked || !allowed(asked, await topologyChoices(opts, mgmt), opts)) return void notListed(res, asked);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    sources.set(sourceKey(asked), asked);
    const stop = live.subscribe(sourceKey(asked), (data) => res.write(`event: topology\ndata: ${data}\n\n`));
    req.on('close', stop);
  });

  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(opts.port, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(s)));
    s.on('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  return {
    url: `http://127.0.0.1:${port}`,
    live,
    close: () =>
      new Promise<void>((resolve) => {
        live.close();
        server.closeAllConnections(); // event streams never end on their own
        server.close(() => resolve());
      }),
  };
}

function askedSource(req: Request): Source | undefined {
  if (typeof req.query.vhost === 'string') return { kind: 'vhost', vhost: req.query.vhost };
  if (typeof req.query.exercise === 'string') return { kind: 'exercise', id: req.query.exercise };
  return undefined;
}

/** A vhost from the list, or any exercise's checks (outside a classroom, whose sandboxes are pooled and not kept). */
function allowed(asked: Source, choices: Choice[], opts: WebOptions): boolean {
  if (asked.kind === 'exercise') return !opts.broker?.classroom && loadManifest().exercise(asked.id) !== undefined;
  // A chapter's demo vhost before the demo ran: the page shows it once the demo makes it.
  if (!opts.broker?.classroom && /^workbook-demo-\d\d$/.test(asked.vhost)) return true;
  return choices.some((c) => sameSource(c.source, asked));
}

function notListed(res: Response, asked: Source | undefined) {
  const what = asked?.kind === 'exercise' ? `exercise ${asked.id}` : asked ? `the vhost ${asked.vhost}` : 'nothing';
  res.status(404).type('html').send(layout('Not listed', `<p>The reader shows only what it lists, and ${esc(what)} is not one of them. <a href="/topology">The list</a> (<code>npm run web -- --vhost NAME</code> adds a vhost).</p>`));
}

/** What a learner may want to see: their exercises' checks (kept sandboxes, the current exercise), the demo vhosts that exist, and any vhost named with --vhost. */
export async function topologyChoices(opts: WebOptions, mgmt: ManagementClient | undefined): Promise<Choice[]> {
  if (!mgmt || !opts.broker) return [];
  const existing = new Set((await mgmt.vhosts().catch(() => [])).map((v) => v.name));
  const choices: Choice[] = [];
  if (!opts.broker.classroom) {
    const kept = keptVhosts.byExercise();
    const current = loadProgress().current;
    for (const id of Object.keys(kept)) choices.push({ source: { kind: 'exercise', id }, label: `your checks of ${id}; the last one failed and kept its vhost` });
    if (current && !kept[current]) choices.push({ source: { kind: 'exercise', id: current }, label: `your checks of ${current}, the current exercise` });
  }
  const classroomDemo = opts.broker.classroom?.demoVhost;
  if (classroomDemo) choices.push({ source: { kind: 'vhost', vhost: classroomDemo }, label: 'your demo vhost' });
  else {
    for (const vhost of [...existing].sort()) {
      const n = /^workbook-demo-(\d\d)$/.exec(vhost)?.[1];
      if (n) choices.push({ source: { kind: 'vhost', vhost }, label: `chapter ${Number(n)}'s demo` });
    }
  }
  for (const vhost of opts.extraVhosts ?? []) {
    const source: Source = { kind: 'vhost', vhost };
    if (!choices.some((c) => sameSource(c.source, source))) choices.push({ source, label: existing.has(vhost) ? 'named with --vhost' : 'named with --vhost; does not exist yet' });
  }
  return choices;
}

/** One snapshot for the page: which vhost, the SVG and the queues' depths, as JSON; or why there is none. */
async function snapshot(mgmt: ManagementClient | undefined, source: Source, link: (vhost: string) => (n: TopologyNode) => string | undefined): Promise<string> {
  if (!mgmt) return JSON.stringify({ error: 'No broker: see npm run doctor.' });
  try {
    let vhost: string;
    let note = '';
    if (source.kind === 'exercise') {
      const resolved = resolveExercise(source.id, (await mgmt.vhosts()).map((v) => v.name), keptVhosts.byExercise());
      if (!resolved.vhost) return JSON.stringify({ error: resolved.note });
      vhost = resolved.vhost;
      note = resolved.note;
    } else {
      vhost = source.vhost;
      if (!(await mgmt.request('GET', `/vhosts/${enc(vhost)}`))) return JSON.stringify({ vhost, error: `The vhost ${vhost} does not exist (yet, or any more).` });
    }
    const topology = buildTopology(await readRawTopology(mgmt, vhost));
    return JSON.stringify({ vhost, note, svg: renderDiagram(topology, link(vhost)), queues: topology.queues });
  } catch (err) {
    return JSON.stringify({ error: `The management API did not answer: ${(err as Error).message}` });
  }
}
