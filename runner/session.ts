// What most commands start with: the manifest, and a broker.
import { loadManifest, ManifestError, type Workbook } from './manifest/load.js';
import type { FindOptions } from './broker/find.js';
import { NoBrokerError, type BrokerInfo } from './broker/types.js';
import { EXIT, UserError } from './exit-codes.js';

export function workbook(): Workbook {
  try {
    return loadManifest();
  } catch (err) {
    if (err instanceof ManifestError) throw new UserError(err.message, EXIT.ENVIRONMENT);
    throw err;
  }
}

export async function broker(opts: FindOptions = {}): Promise<BrokerInfo> {
  // Imported here, not above: commands that need no broker (progress, hint) start faster without them.
  const [{ findBroker }, { sweepStaleSandboxes }, { keptVhosts }] = await Promise.all([
    import('./broker/find.js'),
    import('./sandbox/sandbox.js'),
    import('./check/kept.js'),
  ]);
  try {
    const found = await findBroker(opts);
    // Sandboxes of runs that were killed mid-check (Ctrl-C twice, a crash) are removed here.
    await sweepStaleSandboxes(found, keptVhosts.all()).catch(() => undefined);
    return found;
  } catch (err) {
    if (err instanceof NoBrokerError) throw new UserError(err.message, EXIT.ENVIRONMENT);
    throw err;
  }
}
