import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    // Native LibTorch work already uses every core; parallel test files would only fight over them.
    fileParallelism: false,
  },
});
