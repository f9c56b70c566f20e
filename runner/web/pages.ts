// The web reader's pages, as HTML strings. Everything not written here (names from the
// broker, vhost names, the chapter titles) goes through escapeHtml.
import type { Chapter, Exercise, Workbook } from '../manifest/load.js';
import { statusOf, type Progress, type Status } from '../progress.js';
import { escapeHtml as esc } from './html.js';
import { sameSource, sourceQuery, type Choice, type Source } from './sources.js';

const MARK: Record<Status, string> = { passed: '✓', failed: '✗', pending: '·' };

export function layout(title: string, body: string, extraHead = ''): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · rabbitmq-workbook</title>
<link rel="stylesheet" href="/static/reader.css"><link rel="stylesheet" href="/static/hljs.css">${extraHead}
</head><body>
<nav><a href="/">Chapters</a> <a href="/topology">Live topology</a></nav>
<main>${body}</main>
</body></html>`;
}

export function statusBadge(status: Status): string {
  return `<span class="status ${status}" data-status="${status}">${MARK[status]} ${status}</span>`;
}

export function chapterListPage(workbook: Workbook, progress: Progress): string {
  const items = workbook.chapters.map((c) => {
    const exercises = c.exercises.map((e) => `<li class="exercise" data-id="${esc(e.id)}">${statusBadge(statusOf(progress, e.id))} <span class="id">${esc(e.id)}</span> ${esc(e.title)}</li>`).join('');
    return `<li class="chapter"><h2><a href="/chapters/${c.number}">${c.number}. ${esc(c.title)}</a></h2><ul class="exercises">${exercises}</ul></li>`;
  });
  const current = workbook.exercises.find((e) => statusOf(progress, e.id) !== 'passed');
  const resume = current ? `<p class="resume">Next: <a href="/chapters/${current.chapter}#${exerciseAnchor(current)}">${esc(current.id)} ${esc(current.title)}</a> (<code>npm run watch ${esc(current.id)}</code>)</p>` : '';
  return layout('Chapters', `<h1>rabbitmq-workbook</h1>${resume}<ul class="chapters">${items.join('\n')}</ul>`);
}

function exerciseAnchor(e: Exercise): string {
  return `exercise-${e.id.replace('.', '')}`;
}

/** What follows each "Exercise N.M" heading: its status, the commands, and where its last failed check's vhost is. */
export function exerciseBlock(e: Exercise, progress: Progress, keptVhost: string | undefined, ui: (vhost: string) => string, traced = false): string {
  const entry = progress.exercises[e.id];
  const tries = entry?.attempts ? ` after ${entry.attempts} check${entry.attempts === 1 ? '' : 's'}` : '';
  const kept = keptVhost
    ? `<p>Your last failed check left vhost <code>${esc(keptVhost)}</code>: <a href="/topology?exercise=${encodeURIComponent(e.id)}">its live topology</a> (which follows your next checks of ${esc(e.id)}), <a href="${esc(ui(keptVhost))}" target="_blank" rel="noopener">the vhost in the management UI</a>.</p>`
    : '';
  const trace = traced ? `<p class="trace-link"><a href="/trace/${encodeURIComponent(e.id)}">Your last failed check's message flow</a>, beside the reference solution's.</p>` : '';
  return `<div class="exercise-box" data-exercise="${esc(e.id)}">
<p>${statusBadge(statusOf(progress, e.id))}${tries} · your file: <code>${esc(e.starterPath.replace(/^.*\/exercises\//, 'exercises/'))}</code></p>
<pre class="commands"><code>npm run watch ${esc(e.id)}    # re-checks on every save
npm run check ${esc(e.id)}    # checks once
npm run hint ${esc(e.id)}     # one more hint</code></pre>${kept}${trace}</div>\n`;
}

export function chapterPage(chapter: Chapter, progress: Progress, html: string, demo: { vhost: string; ui: string; exchangesUi: string }): string {
  const list = chapter.exercises
    .map((e) => `<li class="exercise" data-id="${esc(e.id)}">${statusBadge(statusOf(progress, e.id))} <a href="#${exerciseAnchor(e)}">${esc(e.id)} ${esc(e.title)}</a></li>`)
    .join('');
  const aside = `<aside>
<h2>Exercises</h2><ul class="exercises">${list || '<li>none</li>'}</ul>
<h2>Live demo</h2><p><code>npm run chapter ${chapter.number}</code> runs it in vhost <code>${esc(demo.vhost)}</code>.</p>
<p><a href="/topology?vhost=${encodeURIComponent(demo.vhost)}">Its live topology</a> · management UI: <a href="${esc(demo.ui)}" target="_blank" rel="noopener">queues</a>, <a href="${esc(demo.exchangesUi)}" target="_blank" rel="noopener">exchanges</a></p>
</aside>`;
  return layout(`Chapter ${chapter.number}: ${chapter.title}`, `${aside}<article class="chapter-text">${html}</article>`);
}

export function topologyPage(choices: Choice[], selected: Source | undefined, ui: { queues: string; exchanges: string } | undefined, brokerProblem?: string): string {
  // An exercise followed by URL (?exercise=2.1) is shown even when the list does not name it.
  const all = selected && !choices.some((c) => sameSource(c.source, selected)) && selected.kind === 'exercise' ? [...choices, { source: selected, label: `your checks of ${selected.id}` }] : choices;
  const options = all
    .map((c) => `<option value="${esc(sourceQuery(c.source))}"${selected && sameSource(c.source, selected) ? ' selected' : ''}>${esc(c.source.kind === 'vhost' ? `${c.source.vhost} (${c.label})` : `Exercise ${c.source.id}: ${c.label}`)}</option>`)
    .join('');
  const picker = all.length
    ? `<label>Show <select id="source" onchange="location.search = '?' + this.value">${options}</select></label>`
    : `<p>No vhost to show yet: run a demo (<code>npm run chapter 3</code>), or a check that fails keeps its vhost for you.</p>`;
  const legend = `<p class="legend"><span class="key binding">binding (its key)</span> <span class="key dead-letter">dead letters</span> <span class="key alternate">alternate exchange</span> · boxes link to the management UI</p>`;
  const links = ui && selected?.kind === 'vhost' ? `<p>Management UI: <a href="${esc(ui.queues)}" target="_blank" rel="noopener">the vhost</a>, <a href="${esc(ui.exchanges)}" target="_blank" rel="noopener">exchanges</a> of <code>${esc(selected.vhost)}</code></p>` : '';
  const live = selected
    ? `<p id="live-state" class="live">connecting…</p><div id="diagram"></div><table id="queues"><thead><tr><th>queue</th><th>type</th><th>ready</th><th>unacked</th><th>consumers</th></tr></thead><tbody></tbody></table>
<script>${CLIENT_SCRIPT.replace('__QUERY__', JSON.stringify(sourceQuery(selected)).replace(/</g, '\\u003c'))}</script>`
    : '';
  return layout('Live topology', `<h1>Live topology</h1>${brokerProblem ? `<p class="problem">${esc(brokerProblem)}</p>` : ''}${picker}${links}${legend}${live}`);
}

// The page's only script: listens to the server's events and puts the SVG (escaped on the
// server) in place; the table is built with textContent, so broker text is never parsed as HTML.
const CLIENT_SCRIPT = `
const query = __QUERY__;
const state = document.getElementById('live-state');
const events = new EventSource('/topology/events?' + query);
events.addEventListener('topology', (e) => {
  const snapshot = JSON.parse(e.data);
  const what = snapshot.vhost ? 'vhost ' + snapshot.vhost + (snapshot.note ? ' (' + snapshot.note + ')' : '') + ' · ' : '';
  state.textContent = snapshot.error ? snapshot.error : what + 'live, polled every second; last change ' + new Date().toLocaleTimeString();
  state.className = snapshot.error ? 'live problem' : 'live';
  document.getElementById('diagram').innerHTML = snapshot.svg || '';
  const body = document.querySelector('#queues tbody');
  body.replaceChildren(...(snapshot.queues || []).map((q) => {
    const tr = document.createElement('tr');
    tr.dataset.queue = q.name;
    for (const v of [q.name, q.type, q.ready, q.unacked, q.consumers]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      tr.append(td);
    }
    return tr;
  }));
});
events.onerror = () => { state.textContent = 'reconnecting…'; };
`;

export const READER_CSS = `
body { font: 16px/1.55 system-ui, sans-serif; margin: 0; color: #1d232b; background: #fcfcfd; }
nav { background: #ff6600; padding: .5em 1em; } nav a { color: #fff; margin-right: 1.2em; font-weight: 600; text-decoration: none; }
main { max-width: 1200px; margin: 0 auto; padding: 1em 1.5em; }
aside { float: right; width: 300px; margin: 0 0 1em 1.5em; padding: .5em 1em; background: #f3f4f6; border-radius: 6px; font-size: 14px; }
aside h2 { font-size: 16px; } aside ul { padding-left: 0; list-style: none; }
.chapter-text { max-width: 820px; } .chapter-text h1 .anchor, .chapter-text h2 .anchor, .chapter-text h3 .anchor { visibility: hidden; text-decoration: none; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; border-radius: 4px; font-size: 13.5px; } code { font-family: ui-monospace, monospace; }
table { border-collapse: collapse; margin: 1em 0; } th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: left; }
.status { font-weight: 600; font-size: 14px; } .status.passed { color: #1a7f37; } .status.failed { color: #cf222e; } .status.pending { color: #6e7781; }
.chapters, .exercises { list-style: none; padding-left: 0; } .chapter h2 { font-size: 18px; margin-bottom: .2em; }
.exercise-box { border-left: 4px solid #ff6600; padding: .1em 1em; background: #fff7f0; margin-bottom: 1em; }
.problem { color: #cf222e; } .live { color: #6e7781; font-size: 14px; }
#diagram { overflow-x: auto; border: 1px solid #d0d7de; background: #fff; min-height: 60px; }
svg.topology { max-width: 100%; height: auto; } svg.topology text { font: 12px ui-monospace, monospace; fill: #1d232b; } svg.topology text.name { font-weight: 700; }
svg.topology .node rect { stroke-width: 1.5; } svg.topology .exchange rect { fill: #fff1e6; stroke: #ff6600; }
svg.topology .queue rect { fill: #e8f1fb; stroke: #0969da; } svg.topology .missing rect { fill: #fff; stroke: #cf222e; stroke-dasharray: 4 3; }
svg.topology .edge path { fill: none; stroke-width: 1.5; } svg.topology .edge.binding path { stroke: #57606a; }
svg.topology .edge.dead-letter path { stroke: #cf222e; stroke-dasharray: 6 4; } svg.topology .edge.alternate path { stroke: #8250df; stroke-dasharray: 2 3; }
svg.topology .edge text.label { fill: #57606a; font-size: 11px; } svg.topology .edge rect.label-bg { fill: #fff; }
svg.topology .edge.dead-letter text.label { fill: #cf222e; } svg.topology .edge.alternate text.label { fill: #8250df; }
svg.topology .head.binding { fill: #57606a; } svg.topology .head.dead-letter { fill: #cf222e; } svg.topology .head.alternate { fill: #8250df; }
.legend .key { margin-right: 1em; font-size: 14px; } .legend .binding { color: #57606a; } .legend .dead-letter { color: #cf222e; } .legend .alternate { color: #8250df; }
`;
