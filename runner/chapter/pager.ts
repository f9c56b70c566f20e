// Text longer than the terminal goes through a pager, as git does: `less -R` (colours pass
// through), or $PAGER when it is set. In a pipe or a file, or when it fits, it is printed.
import { spawn } from 'node:child_process';

let open = false;

/** True while a pager shows text: Ctrl-C is the pager's to handle, and the command goes on after it. */
export function pagerOpen(): boolean {
  return open;
}

export async function page(text: string): Promise<void> {
  const fits = text.split('\n').length < (process.stdout.rows ?? 24);
  if (!process.stdout.isTTY || fits) {
    console.log(text);
    return;
  }
  const [command, ...args] = process.env.PAGER ? ['sh', '-c', process.env.PAGER] : ['less', '-R'];
  open = true;
  try {
    await new Promise<void>((resolve, reject) => {
      const pager = spawn(command!, args, { stdio: ['pipe', 'inherit', 'inherit'] });
      pager.on('error', reject);
      pager.on('exit', () => resolve());
      // Quitting before the end closes the pipe under the text still being written: that is fine.
      pager.stdin.on('error', () => undefined);
      pager.stdin.end(text + '\n');
    });
  } catch {
    console.log(text); // no pager installed (less is missing on some systems)
  } finally {
    open = false;
  }
}
