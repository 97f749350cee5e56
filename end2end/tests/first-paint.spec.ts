import { test, expect, Page, APIRequestContext } from '@playwright/test';

// The first paint comes from the server with the data in it: pages read
// without JavaScript show it, and hydration starts from it (no "Loading…"
// on the way, no second fetch, no hydration error in the console).

let counter = 0;
const unique = (prefix: string) => `${prefix}-${Date.now()}-${counter++}`;

async function topicWithMessages(request: APIRequestContext, name: string, count: number) {
  expect((await request.post('/api/topics', { data: { name } })).status()).toBe(201);
  for (let n = 1; n <= count; n++) {
    const r = await request.post(`/api/topics/${name}/messages`, { data: { payload: { n, note: 'first-paint' } } });
    expect(r.status()).toBe(201);
  }
}

/// Everything that could say hydration went wrong: uncaught errors and
/// console errors or warnings (Leptos reports mismatches there), and
/// whether the text "Loading" was ever in the page.
async function watch(page: Page) {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
  });
  const api: string[] = [];
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith('/api/')) api.push(path);
  });
  await page.addInitScript(() => {
    (window as any).sawLoading = false;
    new MutationObserver(() => {
      if (document.body?.textContent?.includes('Loading')) (window as any).sawLoading = true;
    }).observe(document, { childList: true, subtree: true, characterData: true });
  });
  return { problems, api };
}

test('without JavaScript every page shows its data', async ({ browser, request }) => {
  const name = unique('paint-nojs');
  await topicWithMessages(request, name, 3);
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();

  await page.goto('/topics');
  await expect(page.locator(`tr[data-topic="${name}"] td`).nth(2)).toHaveText('3');

  await page.goto(`/topics/${name}`);
  await expect(page.getByTestId('meta-seq')).toHaveText('3');
  const history = page.getByTestId('history').locator('article');
  await expect(history).toHaveCount(3);
  await expect(history.first()).toHaveAttribute('data-seq', '3');
  await expect(history.first()).toContainText('first-paint');

  await page.goto('/');
  await expect(page.getByTestId('card-published').locator('.stat-value')).not.toHaveText('–');
  await expect(page.getByTestId('card-topics').locator('.stat-value')).not.toHaveText('0');

  for (const path of ['/', '/topics', `/topics/${name}`]) {
    await page.goto(path);
    await expect(page.locator('main')).not.toContainText('Loading');
  }
  await context.close();
});

test('hydration starts from the server data: no Loading, no refetch, no errors', async ({ page, request }) => {
  const name = unique('paint-hydrate');
  await topicWithMessages(request, name, 2);
  const { problems, api } = await watch(page);

  for (const path of ['/', '/topics', `/topics/${name}`]) {
    api.length = 0;
    await page.goto(path);
    await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
    // The refreshes start a period (a second or more) after hydration:
    // nothing was fetched to hydrate.
    expect(api, `REST calls while hydrating ${path}`).toEqual([]);
    expect(await page.evaluate(() => (window as any).sawLoading), `"Loading" on ${path}`).toBe(false);
  }
  await expect(page.getByTestId('meta-seq')).toHaveText('2');
  await expect(page.getByTestId('history').locator('article')).toHaveCount(2);
  expect(problems).toEqual([]);
});

test('the history follows what is published, from this page and from elsewhere', async ({ page, request }) => {
  const name = unique('paint-history');
  expect((await request.post('/api/topics', { data: { name } })).status()).toBe(201);
  const { problems } = await watch(page);
  await page.goto(`/topics/${name}`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  const history = page.getByTestId('history');
  await expect(history).toContainText('No messages in history.');

  // From this page: shown as soon as the server took it.
  await page.getByLabel('Payload (JSON)').fill('{"from": "this page"}');
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByTestId('publish-result')).toContainText('Published as seq 1');
  await expect(history.locator('article[data-seq="1"]')).toContainText('this page', { timeout: 1_000 });
  await expect(history).not.toContainText('No messages in history.');

  // From a program: within a refresh.
  await request.post(`/api/topics/${name}/messages`, { data: { payload: { from: 'a program' } } });
  await expect(history.locator('article').first()).toHaveAttribute('data-seq', '2', { timeout: 5_000 });
  await expect(page.getByTestId('meta-seq')).toHaveText('2', { timeout: 5_000 });
  expect(problems).toEqual([]);
});

test('pages reached by navigating in the browser load their data over REST', async ({ page, request }) => {
  const name = unique('paint-navigate');
  await topicWithMessages(request, name, 2);
  const { problems, api } = await watch(page);
  await page.goto('/');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await page.getByRole('navigation').getByRole('link', { name: 'Topics' }).click();
  await expect(page.locator(`tr[data-topic="${name}"] td`).nth(2)).toHaveText('2');
  await page.locator(`tr[data-topic="${name}"]`).getByRole('link', { name }).click();
  await expect(page.getByTestId('meta-seq')).toHaveText('2');
  await expect(page.getByTestId('history').locator('article')).toHaveCount(2);
  expect(api).toContain('/api/topics');
  expect(api).toContain(`/api/topics/${name}`);
  expect(problems).toEqual([]);
});
