import { test, expect, Page, APIRequestContext } from '@playwright/test';

// The web UI against the real server, as a person uses it. Each test makes
// its own topics (unique names) so the tests do not see each other.

let counter = 0;
const unique = (prefix: string) => `${prefix}-${Date.now()}-${counter++}`;

async function open(page: Page, path: string) {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(path);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  return errors;
}

async function createTopic(request: APIRequestContext, name: string) {
  const r = await request.post('/api/topics', { data: { name } });
  expect(r.status()).toBe(201);
}

async function publish(request: APIRequestContext, name: string, payload: unknown) {
  const r = await request.post(`/api/topics/${name}/messages`, { data: { payload } });
  expect(r.status()).toBe(201);
  return (await r.json()).seq as number;
}

async function subscribe(page: Page, lastN?: number) {
  if (lastN !== undefined) await page.getByLabel('Replay last').fill(String(lastN));
  await page.getByTestId('subscribe').click();
  await expect(page.getByTestId('live-status')).toHaveText('live');
}

test('navigation between pages works after hydration', async ({ page }) => {
  const errors = await open(page, '/');
  await expect(page.getByRole('heading', { name: 'Dashboard' })).toBeVisible();
  await page.getByRole('navigation').getByRole('link', { name: 'Topics' }).click();
  await expect(page).toHaveURL(/\/topics$/);
  await expect(page.getByRole('heading', { name: 'Topics', exact: true })).toBeVisible();
  await page.getByRole('navigation').getByRole('link', { name: 'Dashboard' }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole('heading', { name: 'Dashboard' })).toBeVisible();
  await page.goBack();
  await expect(page.getByRole('heading', { name: 'Topics', exact: true })).toBeVisible();
  expect(errors).toEqual([]);
});

test('create a topic in the UI, with the name checked before and by the server', async ({ page, request }) => {
  const errors = await open(page, '/topics');
  const input = page.getByLabel('Name', { exact: true });
  const create = page.getByRole('button', { name: 'Create', exact: true });

  await input.fill('bad name!');
  await expect(page.getByTestId('create-error')).toContainText('only A-Z a-z 0-9 . _ - are allowed');
  await expect(create).toBeDisabled();

  const name = unique('ui-created');
  await input.fill(name);
  await expect(page.getByTestId('create-error')).toHaveText('');
  await create.click();
  await expect(page.getByRole('status')).toContainText(`Created ${name}`);
  await expect(page.locator(`tr[data-topic="${name}"]`)).toBeVisible();
  expect((await request.get(`/api/topics/${name}`)).status()).toBe(200);

  // The server refuses a duplicate: its message is shown.
  await input.fill(name);
  await create.click();
  await expect(page.getByTestId('create-error')).toContainText('TOPIC_EXISTS');

  // The filter narrows the list.
  await page.getByLabel('Filter by name').fill(name);
  await expect(page.locator('tbody tr')).toHaveCount(1);
  await page.getByLabel('Filter by name').fill(`${name}-nothing-like-this`);
  await expect(page.getByText('No topic matches the filter.')).toBeVisible();
  expect(errors).toEqual([]);
});

test('delete a topic from the list after confirming', async ({ page, request }) => {
  const name = unique('ui-delete');
  await createTopic(request, name);
  await open(page, '/topics');
  const row = page.locator(`tr[data-topic="${name}"]`);
  await row.getByRole('button', { name: `Delete topic ${name}` }).click();
  await row.getByRole('button', { name: 'Cancel' }).click();
  await expect(row).toBeVisible();
  await row.getByRole('button', { name: `Delete topic ${name}` }).click();
  await row.getByRole('button', { name: `Confirm deleting topic ${name}` }).click();
  await expect(row).toHaveCount(0);
  expect((await request.get(`/api/topics/${name}`)).status()).toBe(404);
});

test('a message published in one page arrives live in another browser', async ({ browser, request }) => {
  const name = unique('ui-live');
  await createTopic(request, name);
  const watcher = await (await browser.newContext()).newPage();
  const publisher = await (await browser.newContext()).newPage();
  const watcherErrors = await open(watcher, `/topics/${name}`);
  await subscribe(watcher, 0);
  // Two: the page's presence watch and its live subscription.
  await expect(watcher.getByTestId('meta-subscribers')).toHaveText('2', { timeout: 10_000 });

  await open(publisher, `/topics/${name}`);
  await publisher.getByLabel('Payload (JSON)').fill('{"order": 42, "item": "tea"}');
  await publisher.getByLabel('Message id (optional)').fill('order-42');
  await publisher.getByRole('button', { name: 'Publish' }).click();
  await expect(publisher.getByTestId('publish-result')).toHaveText('Published as seq 1 (id order-42).');

  const row = watcher.getByTestId('live-log').locator('article[data-seq="1"]');
  await expect(row).toBeVisible();
  await expect(row).toContainText('order-42');
  await expect(row).toContainText('"item": "tea"');
  await expect(watcher.getByTestId('live-received')).toHaveText('1');
  await watcher.screenshot({ path: 'artifacts/topic-live.png', fullPage: true });
  expect(watcherErrors).toEqual([]);
  await watcher.context().close();
  await publisher.context().close();
});

test('subscribe replays the last N from history, then goes live', async ({ page, request }) => {
  const name = unique('ui-replay');
  await createTopic(request, name);
  for (let n = 1; n <= 5; n++) await publish(request, name, { n });
  await open(page, `/topics/${name}`);
  await subscribe(page, 3);
  const log = page.getByTestId('live-log');
  for (const seq of [3, 4, 5]) await expect(log.locator(`article[data-seq="${seq}"]`)).toBeVisible();
  await expect(log.locator('article[data-seq="2"]')).toHaveCount(0);
  await expect(log.getByTestId('live-notice').first()).toContainText('replaying 3 message(s)');
  await publish(request, name, { n: 6 });
  await expect(log.locator('article[data-seq="6"]')).toBeVisible();
  // History from the REST endpoint, newest first.
  await page.getByRole('button', { name: 'Reload' }).click();
  await expect(page.getByTestId('history').locator('article').first()).toHaveAttribute('data-seq', '6');
});

test('invalid JSON is explained and not sent', async ({ page, request }) => {
  const name = unique('ui-json');
  await createTopic(request, name);
  await open(page, `/topics/${name}`);
  await page.getByLabel('Payload (JSON)').fill('{"a": ');
  await expect(page.getByTestId('payload-error')).toContainText('Invalid JSON');
  await expect(page.getByRole('button', { name: 'Publish' })).toBeDisabled();
  await page.getByLabel('Payload (JSON)').fill('[1, 2, 3]');
  await expect(page.getByTestId('payload-error')).toHaveText('');
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByTestId('publish-result')).toContainText('Published as seq 1');
});

test('a publish the server refuses shows its error', async ({ page, request }) => {
  const name = unique('ui-refused');
  await createTopic(request, name);
  await open(page, `/topics/${name}`);
  await request.delete(`/api/topics/${name}`);
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByTestId('publish-result')).toContainText('TOPIC_NOT_FOUND');
});

test('deleting a topic shows the notice on a subscribed page', async ({ page, request }) => {
  const name = unique('ui-deleted');
  await createTopic(request, name);
  await open(page, `/topics/${name}`);
  await subscribe(page);
  await request.delete(`/api/topics/${name}`);
  await expect(page.getByTestId('live-log')).toContainText('The topic was deleted');
  await expect(page.getByTestId('live-status')).toHaveText('ended');
});

test('pause holds messages back and resume shows them', async ({ page, request }) => {
  const name = unique('ui-pause');
  await createTopic(request, name);
  await open(page, `/topics/${name}`);
  await subscribe(page, 0);
  await page.getByRole('button', { name: 'Pause' }).click();
  await publish(request, name, { n: 1 });
  await publish(request, name, { n: 2 });
  await expect(page.locator('.live-status')).toContainText('2 held back');
  await expect(page.getByTestId('live-log').locator('article')).toHaveCount(0);
  await page.getByRole('button', { name: 'Resume' }).click();
  await expect(page.getByTestId('live-log').locator('article')).toHaveCount(2);
  await page.getByRole('button', { name: 'Clear' }).click();
  await expect(page.getByTestId('live-log').locator('article')).toHaveCount(0);
});

test('the dashboard numbers and charts move after publishing from a program', async ({ page, request }) => {
  const name = unique('ui-dash');
  await createTopic(request, name);
  const errors = await open(page, '/');
  const published = page.getByTestId('card-published').locator('.stat-value');
  await expect(published).not.toHaveText('–');
  const before = Number((await published.textContent())!.replace(/,/g, ''));
  const line = page.getByTestId('chart-throughput').locator('path.line.s1');
  const pathBefore = await line.getAttribute('d');

  for (let n = 0; n < 25; n++) await publish(request, name, { n });

  await expect
    .poll(async () => Number((await published.textContent())!.replace(/,/g, '')), { timeout: 10_000 })
    .toBeGreaterThanOrEqual(before + 25);
  await expect.poll(async () => line.getAttribute('d'), { timeout: 10_000 }).not.toBe(pathBefore);
  await expect(page.getByTestId('chart-busiest')).toContainText(name, { timeout: 10_000 });
  await expect(page.getByTestId('card-topics').locator('.stat-value')).not.toHaveText('0');
  expect(errors).toEqual([]);
});

test('screenshots of every page', async ({ page, request }) => {
  const name = unique('ui-shots');
  await createTopic(request, name);
  for (let n = 0; n < 10; n++) await publish(request, name, { n, note: 'screenshot' });
  await open(page, '/');
  await page.waitForTimeout(2_500);
  await page.screenshot({ path: 'artifacts/dashboard.png', fullPage: true });
  await open(page, '/topics');
  await expect(page.locator(`tr[data-topic="${name}"]`)).toBeVisible();
  await page.screenshot({ path: 'artifacts/topics.png', fullPage: true });
  await open(page, `/topics/${name}`);
  await subscribe(page, 5);
  await expect(page.getByTestId('live-log').locator('article')).toHaveCount(5);
  await page.screenshot({ path: 'artifacts/topic.png', fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: 'artifacts/topic-phone.png', fullPage: true });
  await open(page, '/nowhere');
  await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
});

test('the live panel keeps up with 1,000 messages a second and stays usable', async ({ browser, request }) => {
  const name = unique('ui-flood');
  await createTopic(request, name);
  const watcher = await (await browser.newContext()).newPage();
  await open(watcher, `/topics/${name}`);
  // Long tasks (>50 ms on the main thread) while the flood arrives.
  await watcher.evaluate(() => {
    (window as any).longest = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) (window as any).longest = Math.max((window as any).longest, e.duration);
    }).observe({ type: 'longtask', buffered: false });
  });
  await subscribe(watcher, 0);

  // A program publishing 3,000 messages at about 1,000 a second over the WebSocket API.
  const publisher = await (await browser.newContext()).newPage();
  await open(publisher, '/');
  const total = 3000;
  const sending = publisher.evaluate(
    ({ topic, total }) =>
      new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(`ws://${location.host}/ws`);
        ws.onerror = () => reject(new Error('websocket failed'));
        ws.onopen = async () => {
          for (let i = 0; i < total; i++) {
            ws.send(JSON.stringify({ type: 'publish', topic, message: { payload: { i, text: 'flood' } } }));
            if (i % 100 === 99) await new Promise((r) => setTimeout(r, 100));
          }
          resolve();
        };
      }),
    { topic: name, total },
  );
  // The page answers a click while the flood is arriving.
  await watcher.getByRole('button', { name: 'Pause' }).click();
  await expect(watcher.getByRole('button', { name: 'Resume' })).toHaveAttribute('aria-pressed', 'true');
  await watcher.getByRole('button', { name: 'Resume' }).click();
  await sending;

  await expect(watcher.getByTestId('live-received')).toHaveText('3,000', { timeout: 30_000 });
  await expect(watcher.getByTestId('live-log').locator('article')).toHaveCount(500);
  await expect(watcher.getByTestId('live-log').locator(`article[data-seq="${total}"]`)).toBeVisible();
  await expect(watcher.getByTestId('live-log')).not.toContainText('Gap');
  const longest = await watcher.evaluate(() => (window as any).longest as number);
  test.info().annotations.push({ type: 'longest main-thread task (ms)', description: String(Math.round(longest)) });
  console.log(`flood: longest main-thread task ${Math.round(longest)} ms`);
  await watcher.context().close();
  await publisher.context().close();
});
