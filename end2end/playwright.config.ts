import { defineConfig } from '@playwright/test';

// The server under test: the release binary that `cargo leptos build
// --release` wrote, started from the repository root so that it finds its
// site (target/site). Port 4100 keeps it apart from a server run by hand.
const port = Number(process.env.E2E_PORT ?? 4100);
export const baseURL = `http://127.0.0.1:${port}`;
// The reconnect test's TCP proxy: pages loaded through it have its origin,
// which the server allows as a deployment would list its public names.
export const proxyPort = port + 1;

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  fullyParallel: false,
  workers: 1,
  reporter: [['list']],
  outputDir: './test-results',
  use: {
    baseURL,
    screenshot: 'only-on-failure',
    launchOptions: {
      // Debian's Chromium: no browser downloads on these machines.
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  webServer: {
    command: `./target/release/pubsub-server --addr 127.0.0.1:${port} --allowed-origin http://127.0.0.1:${proxyPort}`,
    cwd: '..',
    url: `${baseURL}/api/health`,
    reuseExistingServer: false,
    timeout: 30_000,
    env: { LEPTOS_SITE_ROOT: 'target/site', RUST_LOG: 'warn' },
  },
});
