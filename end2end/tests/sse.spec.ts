import { test, expect } from '@playwright/test';

// A real EventSource in Chromium: the server cuts its stream (an admin
// closes the connection), messages are published while it is down, and the
// browser's own reconnect (retry: 1000, with Last-Event-ID) brings every
// missed message exactly once.

type Seen = { seqs: number[]; ids: string[]; subscribed: any[]; errors: number };

test('EventSource reconnects by itself and gets every missed message once', async ({ page, request }) => {
  const name = `sse-reconnect-${Date.now()}`;
  expect((await request.post('/api/topics', { data: { name } })).status()).toBe(201);
  const publish = async (n: number) => {
    const r = await request.post(`/api/topics/${name}/messages`, { data: { payload: { n } } });
    expect(r.status()).toBe(201);
  };
  // Any page of the server's origin will do.
  await page.goto('/api/health');
  await page.evaluate((topic) => {
    const seen: Seen = { seqs: [], ids: [], subscribed: [], errors: 0 };
    (window as any).seen = seen;
    const source = new EventSource(`/api/topics/${topic}/events`);
    source.addEventListener('subscribed', (e) => seen.subscribed.push(JSON.parse((e as MessageEvent).data)));
    source.onmessage = (e) => {
      seen.seqs.push(JSON.parse(e.data).seq);
      seen.ids.push(e.lastEventId);
    };
    source.onerror = () => { seen.errors += 1; };
  }, name);
  const seen = () => page.evaluate(() => (window as any).seen as Seen);
  await expect.poll(async () => (await seen()).subscribed.length).toBe(1);

  for (let n = 1; n <= 3; n++) await publish(n);
  await expect.poll(async () => (await seen()).seqs).toEqual([1, 2, 3]);
  const epoch = (await seen()).subscribed[0].epoch;
  expect((await seen()).ids).toEqual([1, 2, 3].map((seq) => `${epoch}:${seq}`));

  // The connections board lists the stream as such.
  const watcher = await page.context().newPage();
  await watcher.goto('/connections');
  await expect(watcher.locator('.board-row .transport', { hasText: 'sse' })).toHaveCount(1);
  await watcher.screenshot({ path: 'artifacts/connections-sse.png', fullPage: true });
  await watcher.close();

  // Cut the stream from the server's side.
  const board = await (await request.get('/api/connections')).json();
  const streams = board.connections.filter((c: any) => c.transport === 'sse');
  expect(streams).toHaveLength(1);
  expect((await request.delete(`/api/connections/${streams[0].id}`)).status()).toBe(200);
  await expect.poll(async () => (await seen()).errors).toBe(1);

  // Published while the page is disconnected (it waits a second to retry).
  for (let n = 4; n <= 6; n++) await publish(n);

  await expect.poll(async () => (await seen()).subscribed.length, { timeout: 10_000 }).toBe(2);
  const resumed = (await seen()).subscribed[1];
  expect(resumed).toMatchObject({ topic: name, recovered: true, replayed: 3, seq: 6, epoch });
  await publish(7);
  await expect.poll(async () => (await seen()).seqs).toEqual([1, 2, 3, 4, 5, 6, 7]);
});
