// The web reader's page for the trace of a failed check (/trace/ID): the learner's message
// flow beside the reference solution's under the same check, the first difference marked.
import type { Exercise } from '../manifest/load.js';
import type { Trace } from '../check/trace.js';
import type { Flow } from '../check/flow.js';
import { escapeHtml as esc } from './html.js';
import { layout } from './pages.js';
import { describe, firstDifference, renderSequence, collapse, type Difference } from './sequence.js';

export function tracePage(exercise: Exercise, trace: Trace | undefined): string {
  const title = `Exercise ${exercise.id}: message flow`;
  if (!trace) {
    return layout(title, `<h1>${esc(title)}</h1><p>No trace yet. When a check of your code fails (<code>npm run check ${esc(exercise.id)}</code> or <code>npm run watch ${esc(exercise.id)}</code>), its message flow is kept here, beside the reference solution's.</p>`);
  }
  const learner = trace.learner.flow ?? { events: [] };
  const ref = trace.reference;
  const reference = ref.state === 'done' ? ref.flow : undefined;
  const difference = reference ? firstDifference(learner.events, reference.events) : undefined;
  const refresh = ref.state === 'running' ? '<meta http-equiv="refresh" content="3">' : '';
  const head = `<h1>${esc(title)}</h1>
<p>Your last failed check of ${esc(exercise.id)} ${esc(exercise.title)}, at ${esc(new Date(trace.at).toLocaleString())}: <strong>${esc(trace.learner.summary ?? 'failed')}</strong></p>
<p class="legend">What your code sent to the broker (→, blue) and what the broker sent back (←, purple), one lifeline per connection and channel, times from the check's start; in grey italics, what the checker did meanwhile. Repeats in a row are drawn once (×N). Hover an arrow for all of it.</p>
${summary(ref, learner, reference, difference)}`;
  let right: string;
  if (ref.state === 'running') right = '<p>The reference solution is running through the same check now; this page reloads until it is done.</p>';
  else if (ref.state === 'skipped') right = `<p>Not run for this exercise: ${esc(ref.reason)}.</p>`;
  else if (!reference) right = `<p>The reference run recorded no flow (${esc(ref.status)}${ref.summary ? `: ${esc(ref.summary)}` : ''}).</p>`;
  else right = side(reference, 'the reference solution', difference?.reference);
  const body = `${head}<div class="trace-pair">
<section id="learner"><h2>Your code <small>(${esc(trace.learner.targetPath)})</small></h2>${side(learner, 'your code', difference?.learner)}</section>
<section id="reference"><h2>The reference solution</h2>${right}</section>
</div>`;
  return layout(title, body, `${refresh}<style>main { max-width: none; }</style>`);
}

function side(flow: Flow, who: string, highlight: number | undefined): string {
  const cut = flow.truncated === undefined ? '' : `<p class="problem">Only the first ${flow.events.length} methods are kept${typeof flow.truncated === 'number' ? ` (${flow.truncated} more were left out)` : ''}.</p>`;
  return `${cut}<div class="diagram">${renderSequence(flow, `message flow of ${who}`, highlight)}</div>`;
}

/** One sentence on where the two flows part, or why there is nothing to compare. */
function summary(ref: Trace['reference'], learner: Flow, reference: Flow | undefined, d: Difference | undefined): string {
  if (ref.state !== 'done' || !reference) return '';
  if (ref.status !== 'passed') return `<p class="problem">The reference solution did not pass this check either (${esc(ref.status)}${ref.summary ? `: ${esc(ref.summary)}` : ''}): the broker or the environment is likely the cause, not your code.</p>`;
  if (!d) return '<p>Both flows send and receive the same methods with the same arguments: the difference is elsewhere (timing, the message bodies, or something your code did outside AMQP). The verdict says what the check saw.</p>';
  const at = (flow: Flow, i: number) => (i < flow.events.length ? `<code>${esc(describe(collapse([flow.events[i]!])[0]!))}</code>` : 'nothing more');
  const what = d.kind === 'methods' ? 'the flows part' : 'the same methods, but the arguments differ';
  return `<p class="first-difference">First difference (highlighted), at method ${d.learner + 1}: ${what}. Your code: ${at(learner, d.learner)}; the reference solution: ${at(reference, d.reference)}.</p>`;
}
