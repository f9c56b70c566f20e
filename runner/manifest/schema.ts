// The shape of manifest.yaml. Validated whenever the manifest changed (load.ts keeps the
// validated result in a cache) so a typo in the manifest is reported with its location
// instead of surfacing as a confusing runtime error.
//
// zod is loaded when a manifest is validated, not when this module is imported: most starts
// read the cached result, and loading zod costs more than the rest of `npm run progress`.
import { createRequire } from 'node:module';
import type { z as Z } from 'zod';

/** The schemas, built on first use. */
export function manifestSchemas() {
  return (schemas ??= buildSchemas());
}

let schemas: ReturnType<typeof buildSchemas> | undefined;

function buildSchemas() {
  const { z } = createRequire(import.meta.url)('zod') as { z: typeof Z };
  const version = z.string().regex(/^\d+\.\d+(\.\d+)?$/, 'a version like "3.10" or "4.0.1"');

  const WrongVariantSchema = z.object({
    /** Its patch against the solution: checks/<chapter>/wrong/<exercise-stem>.<name>.patch */
    name: z.string().regex(/^(?!ok-)[a-z0-9-]+$/, 'lower-case words joined by "-", not starting with "ok-" (that is for alternative solutions)'),
    /** What the mistake is, in words (shown in the self-check report). */
    mistake: z.string().min(1),
    /**
     * A fragment the failing verdict's summary must contain (case-insensitive). A list
     * means any of them: some mistakes fail one of two ways, depending on timing.
     */
    expect: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((e) => (Array.isArray(e) ? e : [e])),
  });

  const OkVariantSchema = z.object({
    /** Its patch against the solution: checks/<chapter>/ok/<exercise-stem>.<name>.patch */
    name: z.string().regex(/^ok-[a-z0-9-]+$/, 'a name that starts with "ok-"'),
    /** How it differs from the reference solution, in words (shown in the self-check report). */
    style: z.string().min(1),
  });

  const ExerciseSchema = z.object({
    id: z.string().regex(/^\d+\.\d+$/, 'an id like "2.1"'),
    title: z.string().min(1),
    /** File name inside exercises/<chapter>/ and solutions/<chapter>/. */
    file: z.string().regex(/^\d{2}-[a-z0-9-]+\.ts$/, 'a file like "01-send.ts"'),
    hints: z.array(z.string().min(1)).min(1, 'every exercise needs at least one hint'),
    /** Lowest RabbitMQ version the exercise needs; older brokers skip it with a message. */
    minBroker: version.default('3.8'),
    /** The check stops and restarts the broker: it runs alone, never beside other checks. */
    restartsBroker: z.boolean().default(false),
    /**
     * The check breaks the local three-node cluster (chapter 8): it runs there, in a sandbox vhost
     * of the cluster, one at a time and after the other checks; it is skipped without a local
     * rabbitmq-server (runner/check/cluster-run.ts).
     */
    cluster: z.boolean().default(false),
    /** Upper bound for the whole check, learner code included. */
    timeoutMs: z.number().int().positive().default(10_000),
    /** Queues and exchanges the exercise creates in the default vhost when run on its own; `reset` deletes them. */
    state: z
      .object({
        queues: z.array(z.string()).default([]),
        exchanges: z.array(z.string()).default([]),
      })
      .default({ queues: [], exchanges: [] }),
    wrong: z.array(WrongVariantSchema).min(2, 'every exercise needs at least two known-wrong variants'),
    /** Correct solutions in another style: the self-check requires them to pass. */
    ok: z.array(OkVariantSchema).default([]),
  });

  const ChapterSchema = z.object({
    number: z.number().int().positive(),
    slug: z.string().regex(/^[a-z0-9-]+$/),
    title: z.string().min(1),
    // A chapter being written may list no exercises yet (`exercises:` followed by comments only).
    exercises: z.array(ExerciseSchema).nullish().transform((e) => e ?? []),
  });

  const ManifestSchema = z.object({
    chapters: z.array(ChapterSchema).min(1),
  });

  return { z, ManifestSchema, ChapterSchema, ExerciseSchema, WrongVariantSchema, OkVariantSchema };
}

type Schemas = ReturnType<typeof buildSchemas>;
export type ManifestData = Z.infer<Schemas['ManifestSchema']>;
export type ExerciseData = Z.infer<Schemas['ExerciseSchema']>;
export type ChapterData = Z.infer<Schemas['ChapterSchema']>;
export type WrongVariant = Z.infer<Schemas['WrongVariantSchema']>;
export type OkVariant = Z.infer<Schemas['OkVariantSchema']>;
