// Types of runner/build.mjs (plain JavaScript: it runs before anything is compiled).
export declare const ROOT: string;
export declare const BUILD_DIR: string;
export declare const IS_COMPILED: boolean;
export declare class CompileError extends Error {
  readonly file: string;
  constructor(file: string, message: string);
}
/** What the CLI itself imports: enough for commands that run no check, demo or lab. */
export declare const RUNNER_ONLY: string[];
export declare function syncBuild(dirs?: string[]): void;
export declare function builtPath(source: string): string;
export declare function buildFile(source: string): string;
export declare function compileText(text: string | Buffer, source: string, out: string): void;
/** Write to a temp file, then rename: processes side by side never read half a file. */
export declare function writeAtomic(file: string, content: string | Buffer): void;
