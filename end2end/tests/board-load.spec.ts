import { test, expect } from '@playwright/test';
import WebSocket from 'ws';
import * as fs from 'node:fs';
import { baseURL } from '../playwright.config';

// The connections board at 1,000 connections (BOARD_CONNECTIONS), each
// delivered ten events a second so that every row changes at every
// refresh: the worst case for the page. It records what one refresh costs
// the page's main thread (script time and all work, from the browser's own
// counters), the longest task, the longest gap between frames, and the same
// while sorted by delivered/s (rows move at every refresh). A measurement:
// it runs with E2E_BOARD_LOAD=1 and asserts only that the board keeps up.

const enabled = !!process.env.E2E_BOARD_LOAD;
const connections = Number(process.env.BOARD_CONNECTIONS ?? 1000);
const TOPICS = 10;
const PER_TOPIC_PER_SEC = 10;
const shots = process.env.SHOTS_DIR ?? 'artifacts';

test.skip(!enabled, 'a measurement: run with E2E_BOARD_LOAD=1');

async function openMany(prefix: string, n: number) {
  const url = `${baseURL.replace(/^http/, 'ws')}/ws`;
  const sockets: WebSocket[] = [];
  for (let start = 0; start < n; start += 100) {
    const batch = Array.from({ length: Math.min(100, n - start) }, (_, k) => {
      const i = start + k;
      const ws = new WebSocket(url);
      sockets.push(ws);
      // Every tenth follows all the topics through a pattern.
      const topic = i % 10 === 9 ? `${prefix}.*` : `${prefix}.${i % TOPICS}`;
      return new Promise<void>((resolve, reject) => {
        ws.once('error', reject);
        ws.once('open', () => ws.send(JSON.stringify({ type: 'subscribe', topic, client_id: `load-${i}`, request_id: 's' })));
        ws.on('message', (data) => {
          if (data.toString().includes('"request_id":"s"')) resolve();
        });
      });
    });
    await Promise.all(batch);
  }
  return sockets;
}

/// Main-thread time while the page refreshes for `seconds`, per refresh.
async function measure(page: import('@playwright/test').Page, cdp: import('@playwright/test').CDPSession, seconds: number) {
  const metric = async () => {
    const { metrics } = await cdp.send('Performance.getMetrics');
    const get = (name: string) => metrics.find((m: any) => m.name === name)?.value ?? 0;
    return { script: get('ScriptDuration'), task: get('TaskDuration'), layout: get('LayoutDuration'), style: get('RecalcStyleDuration') };
  };
  let refreshes = 0;
  const count = (r: import('@playwright/test').Response) => {
    if (new URL(r.url()).pathname === '/api/connections') refreshes++;
  };
  page.on('response', count);
  await page.evaluate(() => {
    const w = window as any;
    w.longest = 0;
    w.longTasks = 0;
    w.worstFrame = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        w.longest = Math.max(w.longest, e.duration);
        w.longTasks++;
      }
    }).observe({ type: 'longtask', buffered: false });
    let last = performance.now();
    const frame = (t: number) => {
      w.worstFrame = Math.max(w.worstFrame, t - last);
      last = t;
      if (!w.stopFrames) requestAnimationFrame(frame);
    };
    w.stopFrames = false;
    requestAnimationFrame(frame);
  });
  const before = await metric();
  await page.waitForTimeout(seconds * 1000);
  const after = await metric();
  page.off('response', count);
  const browser = await page.evaluate(() => {
    const w = window as any;
    w.stopFrames = true;
    return { longest: w.longest as number, longTasks: w.longTasks as number, worstFrame: w.worstFrame as number };
  });
  const per = (x: number) => Math.round((x * 1000) / Math.max(refreshes, 1) * 10) / 10;
  return {
    refreshes,
    scriptMsPerRefresh: per(after.script - before.script),
    taskMsPerRefresh: per(after.task - before.task),
    layoutAndStyleMsPerRefresh: per(after.layout - before.layout + after.style - before.style),
    longestTaskMs: Math.round(browser.longest),
    longTasks: browser.longTasks,
    worstFrameGapMs: Math.round(browser.worstFrame),
  };
}

test('the connections board at 1,000 connections: cost of a refresh', async ({ page, request }) => {
  test.setTimeout(300_000);
  const prefix = `load-${Date.now()}`;
  for (let t = 0; t < TOPICS; t++) {
    expect((await request.post('/api/topics', { data: { name: `${prefix}.${t}` } })).status()).toBe(201);
  }
  const opened = Date.now();
  const sockets = await openMany(prefix, connections);
  const openMs = Date.now() - opened;

  // A publisher over one WebSocket: ten events a second to every topic.
  const publisher = new WebSocket(`${baseURL.replace(/^http/, 'ws')}/ws`);
  await new Promise((resolve) => publisher.once('open', resolve));
  const timer = setInterval(() => {
    for (let t = 0; t < TOPICS; t++) {
      publisher.send(JSON.stringify({ type: 'publish', topic: `${prefix}.${t}`, message: { payload: { t, at: Date.now() } } }));
    }
  }, 1000 / PER_TOPIC_PER_SEC);

  try {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const navigated = Date.now();
    await page.goto('/connections');
    await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true', { timeout: 60_000 });
    const hydratedMs = Date.now() - navigated;
    const firstLoad = await cdp.send('Performance.getMetrics');
    const loadScriptMs = Math.round(1000 * (firstLoad.metrics.find((m: any) => m.name === 'ScriptDuration')?.value ?? 0));
    // The subscribers and the publisher.
    await expect(page.getByTestId('board').locator('[data-connection]')).toHaveCount(connections + 1, { timeout: 30_000 });
    // Rates show from the second refresh on.
    await expect(page.getByTestId('board-summary')).not.toContainText('– delivered/s', { timeout: 10_000 });

    const byId = await measure(page, cdp, 20);
    await page.getByRole('button', { name: 'Delivered/s' }).click();
    const byRate = await measure(page, cdp, 20);
    await page.screenshot({ path: `${shots}/connections-1000.png` });

    const report = { connections, openMs, hydratedMs, loadScriptMs, byId, byRate };
    console.log(`board at ${connections} connections: ${JSON.stringify(report)}`);
    test.info().annotations.push({ type: 'board load', description: JSON.stringify(report) });
    fs.writeFileSync(`${shots}/board-load.json`, JSON.stringify(report, null, 2));
    // It keeps up: a refresh a second, each well under a second of work.
    expect(byId.refreshes).toBeGreaterThanOrEqual(15);
    expect(byId.taskMsPerRefresh).toBeLessThan(500);
  } finally {
    clearInterval(timer);
    publisher.close();
    for (const ws of sockets) ws.terminate();
  }
});
