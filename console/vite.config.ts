// Vite config of the console. `plinth start` builds with it when console/dist is missing or older
// than the sources (sidecar/console/build.ts). `npx vite console` runs a dev server on :5173 that
// forwards every non-console path (the API) to a Plinth running on the default port 3000.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/console/',
  // Everything the page needs is bundled: no CDN, no web fonts, no external request.
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: false, assetsInlineLimit: 0 },
  server: { proxy: { '^/(?!console(/|$))': 'http://127.0.0.1:3000' } },
});
