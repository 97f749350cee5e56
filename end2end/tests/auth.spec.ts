import { test, expect } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

// A second server, with keys, started by this file: the UI must ask for a
// key at the first 401, keep it for the tab and send it on REST calls and
// the WebSocket (as ?token=).
const port = Number(process.env.E2E_AUTH_PORT ?? 4101);
const base = `http://127.0.0.1:${port}`;
let server: ChildProcess;

test.beforeAll(async () => {
  server = spawn(
    './target/release/pubsub-server',
    ['--addr', `127.0.0.1:${port}`, '--api-key', 'ui-key=admin,publish,subscribe', '--api-key', 'reader=subscribe'],
    {
      cwd: path.resolve(__dirname, '../..'),
      env: { ...process.env, LEPTOS_SITE_ROOT: 'target/site', RUST_LOG: 'warn' },
      stdio: 'ignore',
    },
  );
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${base}/api/health`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the keyed server did not start');
});

test.afterAll(() => {
  server?.kill('SIGTERM');
});

test('the UI asks for a key, keeps it for the tab and uses it for REST and the WebSocket', async ({ page }) => {
  await page.goto(`${base}/topics`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  const dialog = page.getByRole('dialog');
  await expect(dialog).toBeVisible();
  await expect(dialog).toContainText('UNAUTHORIZED');
  await page.screenshot({ path: 'artifacts/key-prompt.png', fullPage: true });
  await page.getByLabel('API key or token', { exact: true }).fill('ui-key');
  await page.getByRole('button', { name: 'Use this key' }).click();
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByRole('dialog')).toHaveCount(0);

  // Admin: create through the form.
  const name = `ui-auth-${Date.now()}`;
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(page.getByRole('status')).toContainText(`Created ${name}`);

  // Subscribe over the WebSocket (token in the URL) and publish over REST.
  await page.goto(`${base}/topics/${name}`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByRole('dialog')).toHaveCount(0);
  await page.getByTestId('subscribe').click();
  await expect(page.getByTestId('live-status')).toHaveText('live');
  await page.getByLabel('Payload (JSON)').fill('{"secured": true}');
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByTestId('publish-result')).toContainText('Published as seq 1');
  await expect(page.getByTestId('live-log').locator('article[data-seq="1"]')).toBeVisible();

  // Forgetting the key brings the prompt back.
  await page.getByRole('button', { name: 'Forget key' }).click();
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByRole('dialog')).toBeVisible();
});

test('a key without the role sees the server refuse, with the reason', async ({ page }) => {
  await page.goto(`${base}/topics`);
  await expect(page.getByRole('dialog')).toBeVisible();
  await page.getByLabel('API key or token', { exact: true }).fill('reader');
  await page.getByRole('button', { name: 'Use this key' }).click();
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await page.getByLabel('Name', { exact: true }).fill(`ui-auth-ro-${Date.now()}`);
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(page.getByTestId('create-error')).toContainText('FORBIDDEN');
});
