// npm run variant -- open|save ID NAME, for authors. Known-wrong variants and alternative
// solutions are patches against the solution (runner/variants.ts): `open` writes the patched
// file (a copy of the solution for a new NAME) to .workbook/variants/ to edit, and `save`
// diffs it against the solution and writes the patch.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pc from 'picocolors';
import { workbook } from '../session.js';
import { resolveOne } from '../ids.js';
import { variantPatchPath, type Exercise } from '../manifest/load.js';
import { applyVariant, besideSolution, describeVariant, makePatch, PatchError, solutionFiles, variantsOf, type Variant } from '../variants.js';
import { rel, STATE_DIR } from '../paths.js';
import { EXIT, UserError } from '../exit-codes.js';

const EDIT_DIR = path.join(STATE_DIR, 'variants');

export function variantCommand(action: string, id: string, name: string): number {
  const exercise = resolveOne(workbook(), id);
  if (!/^[a-z0-9-]+$/.test(name)) throw new UserError(`A variant's name is lower-case words joined by "-" (alternative solutions start with "ok-"), not "${name}".`, EXIT.USAGE);
  const listed = variantsOf(exercise).find((v) => v.name === name);
  // A new name: "ok-…" is an alternative solution, anything else a known-wrong variant.
  const kind = name.startsWith('ok-') ? 'ok' : 'wrong';
  const variant = listed ?? { kind, name, path: variantPatchPath(exercise.chapterDir, exercise.stem, kind, name) };
  if (action === 'open') return open(exercise, variant);
  if (action === 'save') return save(exercise, variant, listed !== undefined);
  throw new UserError(`Unknown action "${action}": open or save.`, EXIT.USAGE);
}

/** Where a file of the variant is edited: .workbook/variants/01-send.no-confirm.ts */
const editedPath = (solutionFile: string, name: string) => path.join(EDIT_DIR, path.basename(besideSolution(solutionFile, name)));

function open(exercise: Exercise, variant: Variant): number {
  let patched = new Map<string, string>();
  if (existsSync(variant.path)) {
    try {
      patched = applyVariant(exercise, variant);
    } catch (err) {
      if (!(err instanceof PatchError)) throw err;
      console.log(pc.yellow(err.message));
      console.log(`What it changed:\n${readFileSync(variant.path, 'utf8')}`);
      console.log('Below are copies of the current solution: make that change again in them.');
    }
  }
  mkdirSync(EDIT_DIR, { recursive: true });
  const files = solutionFiles(exercise).map((file) => ({ edited: editedPath(file, variant.name), text: patched.get(file) ?? readFileSync(file, 'utf8') }));
  // Never overwrite edits that were not saved.
  const unsaved = files.find((f) => existsSync(f.edited) && readFileSync(f.edited, 'utf8') !== f.text);
  if (unsaved) {
    throw new UserError(`${rel(unsaved.edited)} has changes that are not saved: npm run variant -- save ${exercise.id} ${variant.name}, or delete the file to start again.`, EXIT.FAILED);
  }
  for (const f of files) {
    writeFileSync(f.edited, f.text);
    console.log(rel(f.edited));
  }
  console.log(pc.dim(`${existsSync(variant.path) ? 'The' : 'A new'} ${describeVariant(variant)}. Edit, then: npm run variant -- save ${exercise.id} ${variant.name}`));
  return EXIT.OK;
}

function save(exercise: Exercise, variant: Variant, listed: boolean): number {
  const edited = new Map<string, string>();
  for (const file of solutionFiles(exercise)) {
    const own = editedPath(file, variant.name);
    if (existsSync(own)) edited.set(file, readFileSync(own, 'utf8'));
  }
  if (edited.size === 0) throw new UserError(`Nothing to save: npm run variant -- open ${exercise.id} ${variant.name} first.`, EXIT.USAGE);
  const patch = makePatch(edited);
  if (!patch) throw new UserError(`The ${describeVariant(variant)} is the same as the solution: nothing to save.`, EXIT.FAILED);
  mkdirSync(path.dirname(variant.path), { recursive: true });
  writeFileSync(variant.path, patch);
  console.log(`${pc.green('✓')} ${rel(variant.path)}`);
  if (!listed) {
    const entry = variant.kind === 'ok' ? `ok:\n  - name: ${variant.name}\n    style: how it differs from the solution` : `wrong:\n  - name: ${variant.name}\n    mistake: the mistake, in words\n    expect: words its verdict must contain`;
    console.log(`Now list it in manifest.yaml under id: "${exercise.id}":\n${pc.dim(entry)}`);
  }
  console.log(pc.dim(`Then: npm run selfcheck ${exercise.id}`));
  return EXIT.OK;
}
