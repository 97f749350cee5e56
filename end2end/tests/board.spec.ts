import { test, expect, Page, APIRequestContext } from '@playwright/test';
import WebSocket from 'ws';
import * as fs from 'node:fs';
import { baseURL } from '../playwright.config';

// Patterns in the live panel, presence on the topic page and the
// connections board, against the real server. Clients that are not
// browsers (a subscriber that stops reading) are WebSockets opened from
// Node with the `ws` package.

let counter = 0;
const unique = (prefix: string) => `${prefix}-${Date.now()}-${counter++}`;
// Screenshots of the new pages, looked at by a person after a run.
const shots = process.env.SHOTS_DIR ?? 'artifacts';
fs.mkdirSync(shots, { recursive: true });

async function open(page: Page, path: string) {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(path);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  return errors;
}

async function createTopic(request: APIRequestContext, name: string) {
  expect((await request.post('/api/topics', { data: { name } })).status()).toBe(201);
}

async function publish(request: APIRequestContext, name: string, payload: unknown) {
  const r = await request.post(`/api/topics/${name}/messages`, { data: { payload } });
  expect(r.status()).toBe(201);
}

/// A WebSocket from Node that subscribes and resolves once acknowledged.
async function subscriber(topic: string, clientId: string) {
  const ws = new WebSocket(`${baseURL.replace(/^http/, 'ws')}/ws`);
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.once('open', () => {
      ws.send(JSON.stringify({ type: 'subscribe', topic, client_id: clientId, request_id: 'sub' }));
    });
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === 'ack' && frame.request_id === 'sub') resolve();
    });
  });
  return { ws, closed };
}

test('a pattern in the live panel follows two topics and one created afterwards', async ({ page, request }) => {
  const prefix = unique('ui-pat');
  await createTopic(request, `${prefix}.a`);
  await createTopic(request, `${prefix}.b`);
  await createTopic(request, `${prefix}-elsewhere`);

  // From the topic list: a pattern in the filter shows what it matches and
  // links to the live panel.
  const errors = await open(page, '/topics');
  await page.getByLabel('Filter by name or pattern').fill(`${prefix}.*`);
  await expect(page.locator('tbody tr')).toHaveCount(2);
  await page.screenshot({ path: `${shots}/topics-pattern.png`, fullPage: true });
  await page.getByTestId('watch-pattern').click();
  await expect(page).toHaveURL(/\/live\?topic=/);
  await expect(page.getByLabel('Topic or pattern')).toHaveValue(`${prefix}.*`);
  await expect(page.getByTestId('live-status')).toHaveText('live');
  await expect(page.getByTestId('live-following')).toContainText('following 2 topic(s)');

  await publish(request, `${prefix}.a`, { from: 'a' });
  await publish(request, `${prefix}.b`, { from: 'b' });
  await publish(request, `${prefix}-elsewhere`, { from: 'elsewhere' });
  const log = page.getByTestId('live-log');
  const rowOf = (topic: string) => log.locator('article', { has: page.getByTestId('row-topic').getByText(topic, { exact: true }) });
  await expect(rowOf(`${prefix}.a`)).toContainText('"from": "a"');
  await expect(rowOf(`${prefix}.b`)).toContainText('"from": "b"');

  // A topic created later that matches: announced, then followed.
  await createTopic(request, `${prefix}.c`);
  await expect(log).toContainText(`Topic ${prefix}.c was created`);
  await publish(request, `${prefix}.c`, { from: 'c' });
  await expect(rowOf(`${prefix}.c`)).toContainText('"from": "c"');
  await expect(rowOf(`${prefix}.c`)).toHaveAttribute('data-seq', '1');
  await expect(page.getByTestId('live-following')).toContainText('following 3 topic(s)');

  // A deleted one is announced; the pattern goes on.
  expect((await request.delete(`/api/topics/${prefix}.b`)).status()).toBe(200);
  await expect(log).toContainText(`Topic ${prefix}.b was deleted`);
  await publish(request, `${prefix}.a`, { from: 'a again' });
  await expect(rowOf(`${prefix}.a`).first()).toContainText('a again');
  await expect(page.getByTestId('live-status')).toHaveText('live');
  await expect(log).not.toContainText('elsewhere');
  await expect(log).not.toContainText('Gap');
  await page.screenshot({ path: `${shots}/live-pattern.png`, fullPage: true });
  expect(errors).toEqual([]);
});

test('the topic list links each dotted prefix to the live panel', async ({ page, request }) => {
  const prefix = unique('ui-alike');
  await createTopic(request, `${prefix}.eu.paid`);
  await open(page, '/topics');
  const row = page.locator(`tr[data-topic="${prefix}.eu.paid"]`);
  await expect(row.getByRole('link', { name: `${prefix}.eu.>` })).toBeVisible();
  await row.getByRole('link', { name: `${prefix}.>`, exact: true }).click();
  await expect(page.getByLabel('Topic or pattern')).toHaveValue(`${prefix}.>`);
  await expect(page.getByTestId('live-following')).toContainText('following 1 topic(s)');
});

test('presence on the topic page follows a second browser joining and leaving', async ({ browser, request }) => {
  const name = unique('ui-presence');
  await createTopic(request, name);
  const watcherContext = await browser.newContext();
  const watcher = await watcherContext.newPage();
  const errors = await open(watcher, `/topics/${name}`);
  const presence = watcher.getByTestId('presence');
  await expect(watcher.getByTestId('presence-status')).toHaveText('live');
  // The page's own watch is a subscription: listed, and marked as this page.
  await expect(presence.locator('tbody tr')).toHaveCount(1);
  await expect(presence.locator('tbody tr')).toContainText('this page');

  // A second browser subscribes through the live panel with a client id.
  const otherContext = await browser.newContext();
  const other = await otherContext.newPage();
  await open(other, `/live?topic=${name}&client_id=second-browser&last_n=0`);
  await expect(other.getByTestId('live-status')).toHaveText('live');
  const row = presence.locator('tbody tr', { hasText: 'second-browser' });
  await expect(row).toHaveCount(1);
  await expect(watcher.getByTestId('presence-count')).toHaveText('2');

  // A program (a WebSocket from Node) subscribes too.
  const program = await subscriber(name, 'from-node');
  await expect(presence.locator('tbody tr', { hasText: 'from-node' })).toHaveCount(1);
  await expect(watcher.getByTestId('presence-count')).toHaveText('3');
  await watcher.screenshot({ path: `${shots}/topic-presence.png`, fullPage: true });

  // Leaving: closing the browser, and the program's socket.
  await otherContext.close();
  await expect(row).toHaveCount(0);
  program.ws.close();
  await program.closed;
  await expect(watcher.getByTestId('presence-count')).toHaveText('1');
  expect(errors).toEqual([]);
  await watcherContext.close();
});

test('the connections board shows a stalled subscriber lag and closes it with 4010', async ({ page, request }) => {
  const name = unique('ui-stall');
  await createTopic(request, name);
  const stalled = await subscriber(name, 'stalled-node');
  // From here on Node reads nothing from this socket: the kernel's buffers
  // fill, then the server's queue for it.
  (stalled.ws as any)._socket.pause();

  const errors = await open(page, '/connections?sort=lag');
  const row = page.getByTestId('board').locator('[data-connection]', { hasText: 'stalled-node' });
  await expect(row).toHaveCount(1);
  await expect(row).toContainText(name);
  const lag = async () => Number((await row.locator('[data-col="lag"]').textContent())!.replace(/,/g, ''));
  expect(await lag()).toBe(0);

  // Large payloads over REST until what it has not read shows as lag.
  const payload = { blob: 'x'.repeat(60_000) };
  let published = 0;
  const publishSome = async (n: number) => {
    for (let i = 0; i < n; i++, published++) await publish(request, name, payload);
  };
  await publishSome(150);
  await expect.poll(lag, { timeout: 10_000 }).toBeGreaterThan(0);
  const first = await lag();
  await publishSome(60);
  await expect.poll(lag, { timeout: 10_000 }).toBeGreaterThan(first);
  const meter = row.locator('[role="meter"]');
  await expect.poll(async () => Number(await meter.getAttribute('aria-valuenow'))).toBeGreaterThan(0);
  // Sorted by lag: the stalled connection comes first.
  await expect(page.getByTestId('board').locator('[data-connection]').first()).toContainText('stalled-node');
  await page.screenshot({ path: `${shots}/connections-stalled.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${shots}/connections-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 720 });

  // The dashboard lists it among the laggiest, linking to the board.
  await open(page, '/');
  const laggiest = page.getByTestId('laggiest');
  await expect(laggiest.locator('tbody tr', { hasText: 'stalled-node' })).toHaveCount(1, { timeout: 10_000 });
  await page.screenshot({ path: `${shots}/dashboard-laggiest.png`, fullPage: true });
  await laggiest.locator('tbody tr', { hasText: 'stalled-node' }).getByRole('link').click();
  await expect(page).toHaveURL(/\/connections\?sort=lag/);

  // Close it: confirm, the row goes, the socket ends with 4010.
  const boardRow = page.getByTestId('board').locator('[data-connection]', { hasText: 'stalled-node' });
  await boardRow.getByRole('button', { name: /^Close connection/ }).click();
  await expect(boardRow.getByRole('group', { name: 'Confirm close' })).toBeVisible();
  await page.screenshot({ path: `${shots}/connections-confirm.png` });
  await boardRow.getByRole('button', { name: /^Confirm closing connection/ }).click();
  await expect(boardRow).toHaveCount(0);
  (stalled.ws as any)._socket.resume();
  expect(await stalled.closed).toBe(4010);
  // Gone for the server too.
  await expect.poll(async () => {
    const list = await (await request.get('/api/connections')).json();
    return list.connections.some((c: any) => c.client_ids.includes('stalled-node'));
  }).toBe(false);
  expect(errors).toEqual([]);
});
