import { test, expect } from '@playwright/test';
import * as net from 'node:net';
import { baseURL, proxyPort } from '../playwright.config';

// A TCP proxy in front of the server lets the test cut the page's
// connections while the server keeps running, as a flaky network would.
function startProxy(target: URL): Promise<{ url: string; cut: () => void; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    // On the port the server lists as an allowed origin (the page's
    // WebSocket comes from this origin).
    server.listen(proxyPort, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        url: `http://127.0.0.1:${port}`,
        cut: () => sockets.forEach((s) => s.destroy()),
        close: () => new Promise((done) => { sockets.forEach((s) => s.destroy()); server.close(() => done()); }),
      });
    });
  });
}

test('after a dropped connection the live panel resumes with since and recovers', async ({ page, request }) => {
  const name = `ui-reconnect-${Date.now()}`;
  expect((await request.post('/api/topics', { data: { name } })).status()).toBe(201);
  const proxy = await startProxy(new URL(baseURL));
  try {
    await page.goto(`${proxy.url}/topics/${name}`);
    await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
    await page.getByLabel('Replay last').fill('0');
    await page.getByTestId('subscribe').click();
    await expect(page.getByTestId('live-status')).toHaveText('live');
    await request.post(`/api/topics/${name}/messages`, { data: { payload: { n: 1 } } });
    await expect(page.getByTestId('live-log').locator('article[data-seq="1"]')).toBeVisible();

    // Cut every connection, and publish while the page is away.
    proxy.cut();
    for (let n = 2; n <= 4; n++) {
      await request.post(`/api/topics/${name}/messages`, { data: { payload: { n } } });
    }
    const log = page.getByTestId('live-log');
    await expect(log).toContainText('Connection lost', { timeout: 10_000 });
    await expect(log).toContainText('Reconnected and recovered: 3 message(s)', { timeout: 15_000 });
    await expect(page.getByTestId('live-status')).toHaveText('live');
    for (const seq of [2, 3, 4]) await expect(log.locator(`article[data-seq="${seq}"]`)).toBeVisible();
    await expect(log).not.toContainText('Gap');
    await page.screenshot({ path: 'artifacts/topic-reconnected.png', fullPage: true });
  } finally {
    await proxy.close();
  }
});

test('after a dropped connection a pattern resumes each topic and picks up those created meanwhile', async ({ page, request }) => {
  const prefix = `ui-reconnect-pattern-${Date.now()}`;
  for (const t of ['a', 'b']) {
    expect((await request.post('/api/topics', { data: { name: `${prefix}.${t}` } })).status()).toBe(201);
  }
  const publish = async (topic: string, n: number) => {
    const r = await request.post(`/api/topics/${prefix}.${topic}/messages`, { data: { payload: { topic, n } } });
    expect(r.status()).toBe(201);
  };
  const proxy = await startProxy(new URL(baseURL));
  try {
    await page.goto(`${proxy.url}/live?topic=${prefix}.*&last_n=0`);
    await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
    await expect(page.getByTestId('live-status')).toHaveText('live');
    await publish('a', 1);
    await publish('b', 1);
    const log = page.getByTestId('live-log');
    await expect(log.locator('article')).toHaveCount(2);

    // Away: two topics move on and a third is created and published to.
    proxy.cut();
    await publish('a', 2);
    await publish('a', 3);
    await publish('b', 2);
    expect((await request.post('/api/topics', { data: { name: `${prefix}.c` } })).status()).toBe(201);
    await publish('c', 1);

    await expect(log).toContainText('Connection lost', { timeout: 10_000 });
    await expect(log).toContainText('Reconnected: 3 message(s) published meanwhile recovered', { timeout: 15_000 });
    await expect(log).toContainText(`Created meanwhile and followed now: ${prefix}.c`);
    await expect(page.getByTestId('live-status')).toHaveText('live');
    await expect(log.locator('article')).toHaveCount(6);
    await expect(log).not.toContainText('Gap');
    await expect(page.getByTestId('live-following')).toContainText('following 3 topic(s)');
  } finally {
    await proxy.close();
  }
});
