// The console over 10,000 partitions, driven by tests/test_console_browser.c
// (which fills the store and tells us what it holds, in PARLEY_EXPECT).
// Prints "ok STEP" per step, "ADDRULE" when it wants a service rule added
// through the API (reads "ADDED" back), "FAIL why" then exits 1 on the
// first failure. Nothing here is timed: speed is bench/'s.
'use strict';
const { Browser, chromiumPath, driverIO } = require('./cdp.js');

const URL_ = process.env.PARLEY_URL;
const TOKEN = process.env.PARLEY_TOKEN;
const X = JSON.parse(process.env.PARLEY_EXPECT || '{}');

const { readLine, ok, check } = driverIO();
const J = JSON.stringify;

// Set an input's value as typing would, and let the page see it.
const type = (page, sel, v, ev = 'input') => page.eval(`(() => { const i = document.querySelector(${J(sel)});
  i.value = ${J(v)}; i.dispatchEvent(new Event(${J(ev)}, { bubbles: true })); return true; })()`);
const tab = (page, id) => page.eval(`document.querySelector('#tab-${id}').click(), true`);
const renders = async (page) => JSON.parse(await page.eval(`document.body.dataset.renders || '{}'`));

async function main() {
  const browser = await Browser.launch(chromiumPath());
  try {
    const page = await browser.page();
    await page.init(1400, 900);
    await page.goto(`${URL_}/ui/`);
    await page.eval(`sessionStorage.setItem('parley.token', ${J(TOKEN)}), true`);
    await page.goto(`${URL_}/ui/`);
    await page.until(`document.body.dataset.loaded === 'yes'`, 180000, 'the console to load');
    await page.until(`document.body.dataset.live === 'on'`, 60000, 'the event stream');
    ok(`loaded ${X.parts} partitions`);

    // Too many to draw: the graph asks for a host or a filter, draws nothing.
    const over = await page.eval(`document.body.dataset.graph`);
    check(over === `over/${X.parts}/${X.grants}`, `graph state ${over}, want over/${X.parts}/${X.grants}`);
    check(await page.eval(`document.querySelectorAll('#graph .node').length === 0 &&
      document.querySelector('#graph-count').textContent.includes('choose a host')`), 'a graph of all was drawn, or no hint given');
    const hosts = await page.eval(`document.querySelectorAll('#graph-host option').length`);
    check(hosts === X.hosts + 1, `host list has ${hosts} entries, want ${X.hosts} and "every host"`);
    ok('unfiltered: nothing drawn, a host list of every host');

    // The partitions table: a page at a time, moved by keyboard.
    await tab(page, 'parts');
    const first = await page.eval(`[...document.querySelectorAll('#parts tbody tr')].map((tr) => tr.dataset.partition)`);
    check(first.length === X.page, `the partitions table shows ${first.length} rows, want a page of ${X.page}`);
    check((await page.eval(`document.querySelector('#parts-count').textContent`)).startsWith(`1–${X.page} of ${X.parts} `),
      'the count does not say which page of how many');
    check(await page.eval(`document.querySelector('#parts-prev').disabled`), 'Previous is enabled on the first page');
    await page.eval(`document.querySelector('#parts-next').focus()`);
    await page.key('Enter', 'Enter', 13, '\r');
    await page.until(`document.querySelector('#parts-count').textContent.startsWith('${X.page + 1}–${2 * X.page} ')`, 10000, 'page 2');
    const second = await page.eval(`[...document.querySelectorAll('#parts tbody tr')].map((tr) => tr.dataset.partition)`);
    check(second.length === X.page && !second.some((n) => first.includes(n)), 'page 2 repeats page 1');
    await type(page, '#parts-filter', X.host);
    await page.until(`document.querySelector('#parts-count').textContent.startsWith('1–${X.per_host} of ${X.per_host} ')`, 10000,
      `the partitions of ${X.host}`);
    check(await page.eval(`[...document.querySelectorAll('#parts tbody tr')].every((tr) => tr.cells[1].textContent === ${J(X.host)})`),
      'the filtered table holds another host\'s partition');
    ok(`partitions paged (${X.page} a page, Enter on Next), filtered to ${X.host}`);

    // The graph of one host: its partitions, its grants, the same in the table.
    await tab(page, 'graph');
    await type(page, '#graph-host', X.host, 'change');
    await page.until(`document.body.dataset.graph === '${X.per_host}/${X.host_grants}'`, 20000, `the graph of ${X.host}`);
    const nodes = await page.eval(`[...document.querySelectorAll('#graph .node')].map((n) => n.dataset.host)`);
    check(nodes.length === X.per_host && nodes.every((h) => h === X.host), `graph nodes on ${J([...new Set(nodes)])}`);
    await page.until(`document.querySelector('#edges tbody').dataset.complete === 'yes'`, 10000, 'the edge table');
    const rows = await page.eval(`[...document.querySelectorAll('#edges tbody tr')].map((tr) => tr.cells[1].textContent)`);
    const edges = await page.eval(`document.querySelectorAll('#graph .edge').length`);
    // Its grants, and a stub for each refused open of a channel not granted.
    check(edges === X.host_edges && rows.length === X.host_edges, `${edges} edges, ${rows.length} table rows, want ${X.host_edges}`);
    const stubs = await page.eval(`document.querySelectorAll('#graph .edge.denied[data-b=""]').length`);
    check(stubs === X.host_edges - X.host_grants, `${stubs} refused opens drawn`);
    check(rows.every((r) => r.startsWith(X.part_prefix)), 'the edge table lists an edge of another host');
    ok(`host ${X.host}: ${nodes.length} nodes, ${edges} edges, the table the same`);

    // A channel by name, over every host.
    await type(page, '#graph-host', '', 'change');
    await type(page, '#graph-filter', X.channel);
    await page.until(`document.body.dataset.graph === '2/1'`, 20000, `the graph of ${X.channel}`);
    const one = await page.eval(`[...document.querySelectorAll('#edges tbody tr')].map((tr) => tr.cells[0].textContent)`);
    check(one.length === 1 && one[0] === X.channel, `edge table ${J(one)}`);
    ok(`channel ${X.channel}: its two ends and one edge`);

    // Keyboard in a filtered graph.
    await type(page, '#graph-filter', '');
    await type(page, '#graph-host', X.host, 'change');
    await page.until(`document.body.dataset.graph === '${X.per_host}/${X.host_grants}'`, 20000, `the graph of ${X.host} again`);
    await page.eval(`document.querySelector('#graph-filter').focus()`);
    await page.key('Tab', 'Tab', 9);
    const f1 = await page.eval(`document.activeElement.dataset.partition || ''`);
    check(f1.startsWith(X.part_prefix), `Tab focused ${J(f1)}`);
    await page.key('ArrowDown', 'ArrowDown', 40);
    const f2 = await page.eval(`document.activeElement.dataset.partition || ''`);
    check(f2 && f2 !== f1, `ArrowDown stayed on ${f1}`);
    await page.key('Enter', 'Enter', 13);
    const dim = await page.eval(`document.querySelectorAll('#graph .edge.dim').length`);
    check(dim > 0 && dim < X.host_edges, `Enter dimmed ${dim} edges`);
    // A redraw while a partition has the keyboard (a live event, the
    // filter's late timer) keeps its focus and its selection.
    await page.eval(`document.querySelector('#graph-host').dispatchEvent(new Event('change'))`);
    const f3 = await page.eval(`document.activeElement.dataset.partition || ''`);
    check(f3 === f2, `a redraw moved the keyboard from ${f2} to ${J(f3)}`);
    const dim2 = await page.eval(`document.querySelectorAll('#graph .edge.dim').length`);
    check(dim2 === dim, `a redraw dimmed ${dim2} edges, not ${dim}`);
    await page.key('Escape', 'Escape', 27);
    check(await page.eval(`document.querySelectorAll('#graph .edge.dim').length === 0`), 'Escape did not show all edges');
    ok(`keyboard: ${f1} -> ${f2}, Enter shows its channels, Escape all`);

    // The audit view: filters the server applies.
    await tab(page, 'audit');
    await type(page, '#audit-filter [name=partition]', X.audit.partition);
    await page.until(`(() => { const r = [...document.querySelectorAll('#audit tbody tr')];
      return r.length === ${X.audit.rows} && r.every((tr) => tr.cells[4].textContent === ${J(X.audit.partition)}); })()`,
    20000, `the audit rows of ${X.audit.partition}`);
    await type(page, '#audit-filter [name=reason]', X.audit.reason);
    await page.until(`(() => { const r = [...document.querySelectorAll('#audit tbody tr')];
      return r.length === ${X.audit.reason_rows} && r.every((tr) => tr.cells[6].textContent === ${J(X.audit.reason)}); })()`,
    20000, `the audit rows of ${X.audit.partition} with ${X.audit.reason}`);
    const asked = page.requests.filter((u) => u.includes('/v1/audit?') && u.includes(`partition=${X.audit.partition}`) &&
      u.includes(`reason=${X.audit.reason}`));
    check(asked.length > 0, 'the filters never reached the server');
    const ids = await page.eval(`[...document.querySelectorAll('#audit tbody tr')].map((tr) => Number(tr.cells[0].textContent))`);
    check(ids.every((v, i) => !i || ids[i - 1] > v), 'the audit view is not newest first');
    await type(page, '#audit-filter [name=reason]', 'no such reason');
    await page.until(`document.querySelector('#audit-status').textContent.includes('BAD_REQUEST')`, 20000, 'the server\'s 400 shown');
    await type(page, '#audit-filter [name=reason]', '');
    await type(page, '#audit-filter [name=partition]', '');
    ok(`audit filtered by the server: ${X.audit.rows} rows of ${X.audit.partition}, ${X.audit.reason_rows} ${X.audit.reason}, a bad name refused`);

    // A change while the page is open: only what it touches is drawn again.
    await tab(page, 'graph');
    const before = await renders(page);
    await page.eval(`(window.parleyNoReload = 1)`);
    console.log('ADDRULE');
    check((await readLine()) === 'ADDED', 'the test did not add the rule');
    const r = X.rule;
    await page.until(`!!document.querySelector('#services tbody tr[data-service="${r.service}:${r.source}>${r.target}"]')`,
      20000, 'the new rule in the services table');
    await page.until(`!!document.querySelector('#graph .edge.service[data-channel="${r.service}"]')`, 20000, 'the new rule in the graph');
    const after = await renders(page);
    check(await page.eval(`window.parleyNoReload === 1`), 'the page was reloaded');
    check(after.services > before.services && after.graph > before.graph, `renders ${J(before)} -> ${J(after)}`);
    check(after.parts === before.parts && after.segsets === before.segsets,
      `a service rule redrew the partitions or segment sets: ${J(before)} -> ${J(after)}`);
    ok(`live rule: drawn again ${J(Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]])))}`);

    const errors = page.consoleErrors.filter((e) => !/status of 400/.test(e));
    check(errors.length === 0, `errors in the page: ${J(errors)}`);
    ok('no script errors');
  } finally {
    await browser.close();
  }
}

main().then(() => { console.log('PASS'); process.exit(0); },
  (e) => { console.log(`FAIL ${e.message}`); process.exit(1); });
