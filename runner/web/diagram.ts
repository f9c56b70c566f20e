// Draws a vhost's topology as SVG. The layout is dagre's (a layered graph layout: messages
// flow left to right, from exchanges to queues to dead-letter exchanges), computed here on
// the server, so the browser gets finished SVG and loads no script library.
import { graphlib, layout } from '@dagrejs/dagre';
import { escapeHtml as esc } from './html.js';
import type { Topology, TopologyEdge, TopologyNode } from './topology.js';

// Text is drawn in a monospace font, so its width can be known without a browser.
const CHAR = 7.2;
const LINE = 16;
const PAD = 10;

export interface DiagramLinks {
  /** The management UI's address of an exchange or a queue, or undefined for none. */
  (node: TopologyNode): string | undefined;
}

export function renderDiagram(topology: Topology, link: DiagramLinks = () => undefined): string {
  if (!topology.nodes.length) return `<p class="empty">The vhost ${esc(topology.vhost)} holds no exchanges or queues of its own yet.</p>`;
  const g = new graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: 'LR', nodesep: 24, ranksep: 90, edgesep: 14, marginx: 12, marginy: 12 });
  for (const n of topology.nodes) {
    const lines = [n.name, ...n.detail];
    g.setNode(n.id, { width: Math.max(...lines.map((l) => l.length)) * CHAR + 2 * PAD, height: lines.length * LINE + PAD });
  }
  topology.edges.forEach((e, i) => {
    g.setEdge(e.from, e.to, e.label ? { width: labelWidth(e.label), height: LINE, labelpos: 'c' } : {}, `e${i}`);
  });
  layout(g);
  const { width = 0, height = 0 } = g.graph();
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="${Math.ceil(width)}" height="${Math.ceil(height)}" viewBox="0 0 ${Math.ceil(width)} ${Math.ceil(height)}" role="img" aria-label="topology of vhost ${esc(topology.vhost)}">`,
    '<defs>',
    ...(['binding', 'dead-letter', 'alternate'] as const).map((k) => `<marker id="arrow-${k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="head ${k}"/></marker>`),
    '</defs>',
  ];
  topology.edges.forEach((e, i) => {
    const laid = g.edge({ v: e.from, w: e.to, name: `e${i}` }) as { points: { x: number; y: number }[]; x?: number; y?: number };
    out.push(edgeSvg(e, laid));
  });
  for (const n of topology.nodes) {
    const laid = g.node(n.id) as { x: number; y: number; width: number; height: number };
    out.push(nodeSvg(n, laid, link(n)));
  }
  out.push('</svg>');
  return out.join('\n');
}

/** Edge labels are drawn at 11px: about 6.6px a character in a monospace font. */
function labelWidth(label: string): number {
  return label.length * 6.6 + 8;
}

function nodeSvg(n: TopologyNode, at: { x: number; y: number; width: number; height: number }, href: string | undefined): string {
  const x = at.x - at.width / 2;
  const y = at.y - at.height / 2;
  const shape = n.kind === 'queue' ? `<rect x="${x}" y="${y}" width="${at.width}" height="${at.height}" rx="2"/>` : `<rect x="${x}" y="${y}" width="${at.width}" height="${at.height}" rx="12"/>`;
  const lines = [n.name, ...n.detail].map((t, i) => `<text x="${x + PAD}" y="${y + PAD / 2 + LINE * (i + 0.75)}"${i === 0 ? ' class="name"' : ''}>${esc(t)}</text>`);
  const body = `${shape}${lines.join('')}`;
  const inner = href ? `<a href="${esc(href)}" target="_blank" rel="noopener">${body}</a>` : body;
  return `<g class="node ${n.kind}" data-id="${esc(n.id)}"><title>${esc(n.kind === 'missing' ? `${n.name} (does not exist)` : n.name)}</title>${inner}</g>`;
}

function edgeSvg(e: TopologyEdge, laid: { points: { x: number; y: number }[]; x?: number; y?: number }): string {
  const d = laid.points.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
  const label = e.label && laid.x !== undefined && laid.y !== undefined
    ? `<rect class="label-bg" x="${(laid.x - labelWidth(e.label) / 2).toFixed(1)}" y="${(laid.y - 8).toFixed(1)}" width="${labelWidth(e.label).toFixed(1)}" height="15"/><text x="${laid.x.toFixed(1)}" y="${(laid.y + 4).toFixed(1)}" text-anchor="middle" class="label">${esc(e.label)}</text>`
    : '';
  return `<g class="edge ${e.kind}" data-from="${esc(e.from)}" data-to="${esc(e.to)}"><path d="${d}" marker-end="url(#arrow-${e.kind})"/>${label}</g>`;
}
