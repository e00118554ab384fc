// `npm run dev` serves the UI on :5173 and forwards /api to a trawl-api on :8080
// (for example the local run: `hack/local/trawl-local up`).
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  server: { proxy: { "/api": "http://127.0.0.1:8080" } },
  build: {
    sourcemap: true,
    rollupOptions: {
      // Charts are the bulk of the code; a chunk of their own keeps the first load of other views small.
      output: { manualChunks: { charts: ["recharts"], react: ["react", "react-dom", "react-router-dom"] } },
    },
  },
  test: { include: ["src/**/*.test.ts"] },
});
