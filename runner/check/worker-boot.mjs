// Entry of a check worker thread. Plain JavaScript because a worker starts without
// tsx's loader: register it first, then load the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
await import('./worker-main.ts');
