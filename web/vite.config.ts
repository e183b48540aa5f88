/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The bundle is committed into internal/ui/dist and embedded in the tinymod
// binary, which serves it at / (relative asset paths, no network at run time).
export default defineConfig({
  base: './',
  plugins: [react()],
  build: {
    outDir: '../internal/ui/dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // ELK's worker (1.6 MB) ships as a file of its own; the page itself is below this.
    chunkSizeWarningLimit: 1200,
    reportCompressedSize: false,
    rolldownOptions: {
      output: {
        // Names that go:embed keeps (none starts with "_" or ".").
        entryFileNames: 'assets/index-[hash].js',
        chunkFileNames: 'assets/chunk-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
  worker: {
    // The schema checker (see src/validation.ts) runs as a module worker.
    format: 'es',
    rolldownOptions: {
      output: {
        entryFileNames: 'assets/worker-[name]-[hash].js',
        chunkFileNames: 'assets/worker-chunk-[hash].js',
      },
    },
  },
  server: {
    // `npm run dev` against a running `tinymod ui` (TINYMOD_UI=http://127.0.0.1:PORT).
    proxy: process.env.TINYMOD_UI ? { '/api': { target: process.env.TINYMOD_UI, changeOrigin: false } } : undefined,
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.{ts,tsx}'],
  },
});
