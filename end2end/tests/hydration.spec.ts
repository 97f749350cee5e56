import { test, expect } from '@playwright/test';

// The page is server-rendered, then the WASM hydrates it: the app marks
// <body data-hydrated="true"> from an effect, which only runs in the
// browser. A broken wasm build (e.g. a bad wasm-opt) never gets there.
test('the topics page hydrates and lists topics live', async ({ page, request }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));

  const name = `e2e-${Date.now()}`;
  await page.goto('/topics');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByRole('heading', { name: 'Topics', exact: true })).toBeVisible();

  // Created by a program after the page loaded: the list picks it up by itself.
  const created = await request.post('/api/topics', { data: { name } });
  expect(created.status()).toBe(201);
  const row = page.locator(`tr[data-topic="${name}"]`);
  await expect(row).toBeVisible({ timeout: 10_000 });

  await request.post(`/api/topics/${name}/messages`, { data: { payload: { n: 1 } } });
  await expect(row.locator('td').nth(2)).toHaveText('1', { timeout: 10_000 });

  expect(errors).toEqual([]);
  await request.delete(`/api/topics/${name}`);
});
