import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Starts (or finds) the broker once, with the runner's own code.
    globalSetup: ['tests/global-setup.ts'],
    // One file at a time: the self-check restarts the broker for exercises that need it,
    // and that must not happen under another file's checks.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
