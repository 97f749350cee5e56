import { test, expect } from '@playwright/test';
import { baseURL } from '../playwright.config';

// The API reference: the browser fetches /api/openapi.json and renders it,
// with nothing loaded from another origin (no CDN on these machines).
test('the API page renders the OpenAPI document', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const foreign: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(baseURL) && !r.url().startsWith('data:')) {
      foreign.push(r.url());
    }
  });

  await page.goto('/');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await page.getByRole('navigation').getByRole('link', { name: 'API', exact: true }).click();
  await expect(page).toHaveURL(/\/api-docs$/);
  await expect(page.getByRole('heading', { name: 'REST API' })).toBeVisible();

  // Operations grouped by path, each with its responses.
  const create = page.locator('article#post-api-topics');
  await expect(create.getByRole('heading', { level: 3 })).toHaveText('POST /api/topics');
  await expect(create.locator('li.api-response[data-status="409"]')).toContainText('TOPIC_EXISTS');
  await expect(create.locator('li.api-response[data-status="201"]')).toBeVisible();
  await expect(create).toContainText('Needs an API key');
  await expect(page.locator('article#get-api-health')).toContainText('Open: no API key needed.');

  // Parameters and schemas, as readable trees with links between them.
  const history = page.locator('article#get-api-topics-name-messages');
  await expect(history.locator('table.api-table')).toContainText('since_seq');
  await expect(page.locator('article#schema-TopicName')).toContainText('^[A-Za-z0-9._-]{1,255}$');
  await history.getByRole('link', { name: 'TopicName' }).first().click();
  await expect(page).toHaveURL(/#schema-TopicName$/);

  // The raw document is one click away.
  await expect(page.getByTestId('raw-openapi')).toHaveAttribute('href', '/api/openapi.json');

  expect(errors).toEqual([]);
  expect(foreign).toEqual([]);
});
