// Imports a TypeScript module of the project (a chapter's demo, a lab) whether the runner
// runs under tsx or from the compiled tree, where only compiled .js files can be imported.
import { pathToFileURL } from 'node:url';
import { buildFile, IS_COMPILED } from './build.mjs';

export function importModule<T>(file: string): Promise<T> {
  return import(pathToFileURL(IS_COMPILED ? buildFile(file) : file).href) as Promise<T>;
}
