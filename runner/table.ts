// Tables for the terminal. cli-table3's default style paints the header red, which reads
// like an error, and colours output even when it goes to a file or a pipe: follow
// picocolors' decision instead (NO_COLOR, FORCE_COLOR, a TTY or CI).
import Table, { type TableConstructorOptions } from 'cli-table3';
import pc from 'picocolors';

/** cli-table3's `style` option: cyan headers and grey borders, or no colour at all. */
export const TABLE_STYLE = pc.isColorSupported ? { head: ['cyan'], border: ['grey'] } : { head: [], border: [] };

export function terminalTable(options: TableConstructorOptions = {}): Table.Table {
  return new Table({ ...options, style: { ...TABLE_STYLE, ...options.style } });
}
