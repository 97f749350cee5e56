import { test, expect } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import * as path from 'node:path';

// A server that accepts signed tokens, started by this file: a token
// pasted where the UI asks for a key works as one, limited to its claims.
// The case: a browser handed a token for `orders.*`, ten minutes.
const port = Number(process.env.E2E_TOKENS_PORT ?? 4103);
const base = `http://127.0.0.1:${port}`;
const secret = 'an end-to-end secret that is long enough';
const admin = 'tokens-admin';
let server: ChildProcess;

/** An HS256 JWT, as a backend would mint it. */
function mint(claims: object): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`;
}

const ordersToken = () =>
  mint({
    sub: 'browser-1',
    exp: Math.floor(Date.now() / 1000) + 600,
    roles: ['publish', 'subscribe'],
    topics: { publish: ['orders.*'], subscribe: ['orders.*'] },
  });

test.beforeAll(async () => {
  server = spawn(
    './target/release/pubsub-server',
    ['--addr', `127.0.0.1:${port}`, '--token-secret', secret, '--api-key', `${admin}=admin,publish`],
    {
      cwd: path.resolve(__dirname, '../..'),
      env: { ...process.env, LEPTOS_SITE_ROOT: 'target/site', RUST_LOG: 'warn' },
      stdio: 'ignore',
    },
  );
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${base}/api/health`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const name of ['orders.eu', 'users.x']) {
    const created = await fetch(`${base}/api/topics`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    if (created.status !== 201) throw new Error(`create ${name}: ${created.status}`);
  }
});

test.afterAll(() => {
  server?.kill('SIGTERM');
});

test('a token limited to orders.* works where a key does, and only there', async ({ page }) => {
  await page.goto(`${base}/topics`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByRole('dialog')).toBeVisible();
  await page.getByLabel('API key or token', { exact: true }).fill(ordersToken());
  await page.getByRole('button', { name: 'Use this key' }).click();
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByRole('dialog')).toHaveCount(0);
  await expect(page.locator('main')).toContainText('users.x');

  // An allowed topic: live over the WebSocket (token in the URL), publish
  // over REST.
  await page.goto(`${base}/topics/orders.eu`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await page.getByTestId('subscribe').click();
  await expect(page.getByTestId('live-status')).toHaveText('live');
  await page.getByLabel('Payload (JSON)').fill('{"order": 1}');
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByTestId('publish-result')).toContainText('Published as seq 1');
  await expect(page.getByTestId('live-log').locator('article[data-seq="1"]')).toBeVisible();
  await expect(page.getByTestId('presence')).toContainText('browser-1');
  await page.screenshot({ path: 'artifacts/token-allowed.png', fullPage: true });

  // A topic outside the claims: the server's FORBIDDEN, with its reason.
  await page.goto(`${base}/topics/users.x`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await page.getByTestId('subscribe').click();
  await expect(page.getByTestId('live-log')).toContainText('FORBIDDEN');
  await expect(page.getByTestId('live-log')).toContainText('orders.*');
  await page.getByLabel('Payload (JSON)').fill('{"order": 2}');
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByTestId('publish-result')).toContainText('FORBIDDEN');
  await page.screenshot({ path: 'artifacts/token-forbidden.png', fullPage: true });
});
