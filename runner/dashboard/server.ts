// The instructor's dashboard as a web app (Express 5): a login page, one static page with one
// small script, and a stream of server-sent events that carries the class as it changes.
// Everything but the login page and its style sheet needs a session (auth.ts).
//
// Why server-sent events: updates only flow from the server to the page, SSE is plain HTTP
// (the session cookie goes with it, no second way to authenticate a WebSocket), and the
// browser's EventSource reconnects by itself.
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Server } from 'node:http';
import express, { type Request, type Response, type NextFunction } from 'express';
import { ROOT } from '../paths.js';
import { Auth, FAILURE_DELAY_MS } from './auth.js';
import type { Cell, ClassState } from './state.js';

// The page's files are served from the source tree (the runner itself runs compiled, from .workbook/build).
const PUBLIC = path.join(ROOT, 'runner', 'dashboard', 'public');

/** Nothing but the dashboard's own files: no inline script or style, no other origin, no framing. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export interface Dashboard {
  /** Sends a changed cell (and the refused count) to every open page. */
  update(cell?: Cell): void;
  close(): Promise<void>;
  port: number;
}

export async function startDashboard(opts: { state: ClassState; password: string; port: number; host: string }): Promise<Dashboard> {
  const { state } = opts;
  const auth = new Auth(opts.password);
  const pages = new Set<Response>();
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use((_req, res, next) => {
    res.set({
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-store',
    });
    next();
  });

  app.get('/login', (req, res) => {
    res.type('html').send(loginPage(state.className, req.query.failed !== undefined));
  });
  app.get('/style.css', (_req, res) => res.sendFile(path.join(PUBLIC, 'style.css')));

  app.post('/login', express.urlencoded({ extended: false, limit: '2kb' }), async (req, res) => {
    const address = req.socket.remoteAddress ?? '?';
    const wait = auth.lockedFor(address);
    if (wait) {
      res.status(429).set('Retry-After', String(wait)).type('text').send(`Too many failed logins from your address: try again in ${Math.ceil(wait / 60)} minute(s).`);
      return;
    }
    if (!auth.passwordMatches((req.body as Record<string, unknown> | undefined)?.password)) {
      auth.failed(address);
      await sleep(FAILURE_DELAY_MS);
      res.redirect(303, '/login?failed');
      return;
    }
    res.set('Set-Cookie', auth.startSession().cookie).redirect(303, '/');
  });

  // Everything below needs a session.
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (auth.isLoggedIn(req.headers.cookie)) return next();
    if (req.method === 'GET' && req.accepts(['html', 'text/event-stream']) === 'html') res.redirect(303, '/login');
    else res.status(401).type('text').send('Log in first.');
  });

  app.post('/logout', (req, res) => {
    res.set('Set-Cookie', auth.endSession(req.headers.cookie)).redirect(303, '/login');
  });
  app.get('/', (_req, res) => res.sendFile(path.join(PUBLIC, 'index.html')));
  app.get('/dashboard.js', (_req, res) => res.sendFile(path.join(PUBLIC, 'dashboard.js')));
  app.get('/snapshot', (_req, res) => res.json(state.snapshot()));

  app.get('/events', (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.write(`retry: 2000\n\nevent: snapshot\ndata: ${JSON.stringify(state.snapshot())}\n\n`);
    pages.add(res);
    req.on('close', () => pages.delete(res));
  });

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(opts.port, opts.host, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  // A comment every 20 s keeps proxies and idle timeouts from closing a quiet stream.
  const keepAlive = setInterval(() => pages.forEach((p) => p.write(': still here\n\n')), 20_000);
  keepAlive.unref();

  return {
    port: (server.address() as { port: number }).port,
    update(cell) {
      // JSON.stringify escapes line breaks, so one `data:` line holds the whole message.
      const data = JSON.stringify({ cell, exercise: cell && { id: cell.exercise, title: state.title(cell.exercise) ?? '' }, refused: state.refused });
      pages.forEach((p) => p.write(`event: update\ndata: ${data}\n\n`));
    },
    async close() {
      clearInterval(keepAlive);
      pages.forEach((p) => p.end());
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The login page: static but for the class name (a class name is [a-z0-9-], escaped all the same). */
function loginPage(className: string, failed: boolean): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Class ${escapeHtml(className)}: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/style.css"></head>
<body class="login"><main>
<h1>Class ${escapeHtml(className)}</h1>
<p>The instructor's dashboard. The password is in the class file (<code>class.json</code>, <code>dashboard.password</code>).</p>
${failed ? '<p class="error" id="login-error">Wrong password.</p>' : ''}
<form method="post" action="/login"><label>Password <input type="password" name="password" autocomplete="current-password" autofocus required></label>
<button type="submit">Log in</button></form>
</main></body></html>
`;
}
