// ui_graph_render_ms (bench/README.md): the console in headless Chromium
// over a parleyd with 1,000 partitions and 2,000 grants (bench_console.c
// starts it and runs this). Per run: the page loaded with the token in
// sessionStorage, from navigation start to the first frame painted after
// the whole graph was drawn (every node and edge). Prints each run on
// stderr and the median as the figure.
// PARLEY_MODE=load (console_load_*, bench_console.c's fleets of 10 and
// 10,000 partitions): navigation start to the first frame painted after the
// page loaded (every list read and every view drawn: data-loaded, and
// data-graph saying how many partitions it holds, PARLEY_WANT); the median
// printed as BENCH console_load_ms for bench_console.c to take.
'use strict';
const path = require('path');
const { Browser, chromiumPath } = require(path.join(__dirname, '..', 'tests', 'browser', 'cdp.js'));

const URL_ = process.env.PARLEY_URL, TOKEN = process.env.PARLEY_TOKEN;
const RUNS = Number(process.env.PARLEY_RUNS || 5);
const WANT = process.env.PARLEY_WANT || '1000/2000';
const LOAD = process.env.PARLEY_MODE === 'load';
const NAME = LOAD ? 'console_load_ms' : 'ui_graph_render_ms';
// Loaded: every view drawn; the graph holds WANT partitions, drawn or
// (beyond GRAPH_MAX) waiting for a filter.
const DONE = LOAD
  ? `document.body.dataset.loaded === 'yes' && /^(over\\/)?${WANT}\\//.test(document.body.dataset.graph || '')`
  : `document.body.dataset.graph === '${WANT}'`;

async function main() {
  const browser = await Browser.launch(chromiumPath());
  const times = [];
  try {
    const page = await browser.page();
    await page.init(1600, 1000);
    await page.goto(`${URL_}/ui/`);
    await page.eval(`sessionStorage.setItem('parley.token', ${JSON.stringify(TOKEN)}), true`);
    await page.send('Performance.enable', { timeDomain: 'threadTicks' });
    const metrics = async () => Object.fromEntries((await page.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    for (let i = 0; i <= RUNS; i++) {
      await page.goto(`${URL_}/ui/`);
      await page.until(DONE, 120000, LOAD ? `the page of ${WANT} partitions` : `the graph ${WANT}`);
      const t = await page.eval(`new Promise((r) => requestAnimationFrame(() =>
        requestAnimationFrame(() => r(performance.now()))))`);
      const drawn = await page.eval(`Number(document.body.dataset.graphAt)`);
      const m1 = await metrics();
      // The counters start again with each document.
      const d = (k) => (m1[k] * 1000).toFixed(0);
      console.error(`bench: main thread so far: script ${d('ScriptDuration')} ms, style ${d('RecalcStyleDuration')} ms, layout ${d('LayoutDuration')} ms, all tasks ${d('TaskDuration')} ms`);
      if (i === 0) { console.error(`bench: warm-up ${t.toFixed(1)} ms`); continue; }
      console.error(`bench: run ${i}: painted at ${t.toFixed(1)} ms (drawn at ${drawn} ms)`);
      times.push(t);
    }
  } finally {
    await browser.close();
  }
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  console.error(`bench: ${NAME} (${WANT}) min ${times[0].toFixed(1)} max ${times[times.length - 1].toFixed(1)}`);
  console.log(`BENCH ${NAME} ${med.toFixed(1)} ms`);
}

main().catch((e) => { console.error(`bench: ${e.message}`); process.exit(1); });
