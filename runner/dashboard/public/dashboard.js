// The instructor's dashboard page. Everything learners wrote (summaries) is untrusted: it only
// ever reaches the page through textContent, never as HTML.
'use strict';

const state = { className: '', learners: [], exercises: [], cells: new Map(), thresholds: { fails: 5, minutes: 10 }, refused: 0 };
const key = (learner, exercise) => `${learner} ${exercise}`;

/** The same rule as runner/dashboard/state.ts isStuck. */
function isStuck(cell, now) {
  if (cell.last.verdict === 'passed' || cell.failsSincePass === 0) return false;
  return cell.failsSincePass >= state.thresholds.fails || (cell.failingSince !== undefined && now - cell.failingSince >= state.thresholds.minutes * 60000);
}

function since(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

/** Exercise ids in the workbook's order: 2.1 < 2.10 < 10.1. */
const byId = (a, b) => {
  const [a1, a2] = a.id.split('.').map(Number);
  const [b1, b2] = b.id.split('.').map(Number);
  return a1 - b1 || a2 - b2;
};

function render() {
  const now = Date.now();
  document.title = `Class ${state.className}: dashboard`;
  document.getElementById('title').textContent = `Class ${state.className}`;
  document.getElementById('rule').textContent =
    `A learner is stuck on an exercise after ${state.thresholds.fails} failed checks, or ${state.thresholds.minutes} minutes of failing, without a pass.`;

  // The grid.
  const head = document.querySelector('#grid thead');
  const headRow = el('tr');
  headRow.append(el('th', 'Learner'));
  for (const x of state.exercises) {
    const th = el('th', x.id);
    th.title = x.title;
    headRow.append(th);
  }
  head.replaceChildren(headRow);
  const rows = [];
  const stuck = [];
  for (const learner of state.learners) {
    const tr = el('tr');
    tr.dataset.learner = learner;
    tr.append(el('th', learner));
    let learnerStuck = false;
    for (const x of state.exercises) {
      const cell = state.cells.get(key(learner, x.id));
      const td = el('td', undefined, 'cell');
      td.dataset.learner = learner;
      td.dataset.exercise = x.id;
      if (cell) {
        const stuckHere = isStuck(cell, now);
        td.classList.add(cell.last.verdict);
        if (stuckHere) {
          td.classList.add('stuck');
          learnerStuck = true;
          stuck.push(cell);
        }
        td.append(el('span', cell.last.verdict, 'verdict'));
        td.append(el('span', `${cell.attempts} check${cell.attempts === 1 ? '' : 's'} · ${since(now - cell.firstAt)}`, 'meta'));
        td.title = cell.last.summary;
      }
      tr.append(td);
    }
    if (learnerStuck) tr.classList.add('stuck');
    rows.push(tr);
  }
  document.querySelector('#grid tbody').replaceChildren(...rows);

  // Who is stuck, with their last verdict's summary.
  const items = stuck.map((cell) => {
    const li = el('li');
    li.dataset.learner = cell.learner;
    li.append(el('strong', `${cell.learner} on ${cell.exercise}`));
    li.append(document.createTextNode(`: ${cell.failsSincePass} failed check${cell.failsSincePass === 1 ? '' : 's'} in ${since(now - (cell.failingSince ?? cell.firstAt))}, last: ${cell.last.verdict}`));
    li.append(el('span', cell.last.summary, 'summary'));
    return li;
  });
  document.getElementById('stuck').replaceChildren(...(items.length ? items : [el('li', 'Nobody.', 'dim')]));

  // Where the class stands, per exercise.
  const standing = state.exercises.map((x) => {
    let passed = 0;
    let trying = 0;
    for (const learner of state.learners) {
      const cell = state.cells.get(key(learner, x.id));
      if (!cell) continue;
      if (cell.passedAt !== undefined) passed++;
      else trying++;
    }
    const tr = el('tr');
    tr.dataset.exercise = x.id;
    const name = el('th', x.id);
    name.title = x.title;
    tr.append(name, el('td', String(passed)), el('td', String(trying)), el('td', String(state.learners.length - passed - trying)));
    return tr;
  });
  document.querySelector('#standing tbody').replaceChildren(...standing);
}

function setStatus(text) {
  const refused = state.refused ? ` · ${state.refused} malformed event(s) ignored` : '';
  document.getElementById('status').textContent = text + refused;
}

const events = new EventSource('/events');
events.addEventListener('snapshot', (e) => {
  const s = JSON.parse(e.data);
  state.className = s.className;
  state.learners = s.learners;
  state.exercises = s.exercises.slice().sort(byId);
  state.thresholds = s.thresholds;
  state.refused = s.refused;
  state.cells = new Map(s.cells.map((c) => [key(c.learner, c.exercise), c]));
  render();
  setStatus(`Live · ${state.learners.length} learners`);
});
events.addEventListener('update', (e) => {
  const u = JSON.parse(e.data);
  state.refused = u.refused;
  if (u.cell) {
    state.cells.set(key(u.cell.learner, u.cell.exercise), u.cell);
    if (!state.exercises.some((x) => x.id === u.exercise.id)) state.exercises = [...state.exercises, u.exercise].sort(byId);
    render();
  }
  setStatus(`Live · ${state.learners.length} learners · last event ${new Date().toLocaleTimeString()}`);
});
events.addEventListener('error', () => {
  // A closed stream (not one being retried) means the session has ended: log in again.
  if (events.readyState === EventSource.CLOSED) location.assign('/login');
  else setStatus('Connection lost: reconnecting…');
});
// Times since the first check, and who has been failing too long, move on without new events.
setInterval(render, 15000);
