// Types of runner/build.mjs (plain JavaScript: it runs before anything is compiled).
export declare const ROOT: string;
export declare const BUILD_DIR: string;
export declare const IS_COMPILED: boolean;
export declare class CompileError extends Error {
  readonly file: string;
  constructor(file: string, message: string);
}
export declare function syncBuild(): void;
export declare function builtPath(source: string): string;
export declare function buildFile(source: string): string;
export declare function compileText(text: string | Buffer, source: string, out: string): void;
