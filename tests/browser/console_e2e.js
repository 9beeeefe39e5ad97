// The console in headless Chromium, driven by tests/test_console_browser.c
// (which starts parleyd and tells us its URL, a token and what the graph
// must show). Prints "ok STEP" per step, "INJECT" when it wants the test to
// make the agent's refused open happen (and reads "INJECTED" back), and
// "ADDRULE" when it wants a service rule added through the API (and reads
// "ADDED"), "FAIL why" then exits 1 on the first failure.
'use strict';
const { Browser, chromiumPath, driverIO } = require('./cdp.js');

const URL_ = process.env.PARLEY_URL;
const TOKEN = process.env.PARLEY_TOKEN;
const SHOT = process.env.PARLEY_SHOT;
const EXPECT = JSON.parse(process.env.PARLEY_EXPECT || '{}');
const origin = new URL(URL_).origin;

const { readLine, ok, check } = driverIO();
const sameSet = (a, b) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

async function login(page, token) {
  await page.eval(`(() => { const i = document.querySelector('#token'); i.value = ${JSON.stringify(token)};
    document.querySelector('#login-form').requestSubmit(); return true; })()`);
}

async function main() {
  const browser = await Browser.launch(chromiumPath());
  let page;
  try {
    page = await browser.page();
    await page.init(1400, 900);
    await page.goto(`${URL_}/ui/`);
    check(await page.eval(`!document.querySelector('#login').hidden`), 'the login form is not shown');
    ok('login form shown');

    // A wrong token: refused, nothing kept, the app not shown.
    await login(page, 'prl_' + '0'.repeat(64));
    await page.until(`document.querySelector('#login-error').textContent.includes('refused')`, 10000, 'the refusal');
    check(await page.eval(`document.querySelector('#app').hidden && sessionStorage.getItem('parley.token') === null`),
      'a refused token was kept or the app shown');
    ok('wrong token refused');

    await login(page, TOKEN);
    await page.until(`document.body.dataset.loaded === 'yes'`, 20000, 'the console to load');
    await page.until(`document.body.dataset.live === 'on'`, 20000, 'the event stream');
    check(await page.eval(`sessionStorage.getItem('parley.token') === ${JSON.stringify(TOKEN)} && localStorage.length === 0`),
      'the token is not (only) in sessionStorage');
    ok('logged in, live');

    const nodes = await page.eval(`[...document.querySelectorAll('#graph .node')].map((n) => n.dataset.partition)`);
    check(sameSet(nodes, EXPECT.nodes), `graph nodes ${JSON.stringify(nodes)}, want ${JSON.stringify(EXPECT.nodes)}`);
    const edges = await page.eval(`[...document.querySelectorAll('#graph .edge')].map((e) => e.dataset.channel + ':' + e.dataset.a + '>' + e.dataset.b)`);
    check(sameSet(edges, EXPECT.edges), `graph edges ${JSON.stringify(edges)}, want ${JSON.stringify(EXPECT.edges)}`);
    await page.until(`document.querySelector('#edges tbody').dataset.complete === 'yes'`, 10000, 'the edge table');
    const rows = await page.eval(`document.querySelectorAll('#edges tbody tr').length`);
    check(rows === EXPECT.edges.length, `edge table has ${rows} rows`);
    const open = await page.eval(`[...document.querySelectorAll('#graph .edge.open')].map((e) => e.dataset.channel)`);
    check(sameSet(open, EXPECT.open), `open edges ${JSON.stringify(open)}, want ${JSON.stringify(EXPECT.open)}`);
    ok('graph nodes and edges, open ones drawn as open');

    const quar = await page.eval(`[...document.querySelectorAll('#graph .node.quarantined')].map((n) => n.dataset.partition)`);
    check(sameSet(quar, EXPECT.quarantined), `quarantined ${JSON.stringify(quar)}, want ${JSON.stringify(EXPECT.quarantined)}`);
    const label = await page.eval(`document.querySelector('#graph .node.quarantined').getAttribute('aria-label')`);
    check(/quarantined \(/.test(label), `the quarantined node's label does not name the file: ${label}`);
    ok('quarantined partition marked');

    // Hosts: the agent version its hello said, or unknown.
    const versions = await page.eval(`Object.fromEntries([...document.querySelectorAll('#hosts tbody tr')].map((tr) => [tr.cells[0].textContent, tr.cells[5].textContent]))`);
    check(sameSet(Object.keys(versions), Object.keys(EXPECT.versions)) &&
      Object.keys(EXPECT.versions).every((k) => versions[k] === EXPECT.versions[k]),
      `agent versions ${JSON.stringify(versions)}, want ${JSON.stringify(EXPECT.versions)}`);
    const upd = await page.eval(`[...document.querySelectorAll('#hosts tbody tr')].map((tr) => tr.cells[6].textContent)`);
    check(upd.every((u) => u === 'none asked for'), `update cells ${JSON.stringify(upd)}`);
    ok(`hosts: agent versions ${JSON.stringify(versions)}`);

    // Service rules: in their table and as edges of their own style.
    const svcs = await page.eval(`[...document.querySelectorAll('#services tbody tr')].map((tr) => tr.dataset.service)`);
    check(sameSet(svcs, EXPECT.services), `service rows ${JSON.stringify(svcs)}, want ${JSON.stringify(EXPECT.services)}`);
    const svcEdges = await page.eval(`[...document.querySelectorAll('#graph .edge.service')].map((e) => e.dataset.channel + ':' + e.dataset.a + '>' + e.dataset.b)`);
    check(sameSet(svcEdges, EXPECT.services), `service edges ${JSON.stringify(svcEdges)}`);
    check(await page.eval(`(() => { const e = document.querySelector('#graph .edge.service');
      const s = getComputedStyle(e), g = getComputedStyle(document.querySelector('#graph .edge:not(.service)'));
      return s.stroke !== g.stroke && e.querySelector('title').textContent.startsWith('service '); })()`),
    'a service edge is drawn like a grant, or has no text alternative');
    check(await page.eval(`[...document.querySelectorAll('#edges tbody tr')].some((tr) => tr.cells[0].textContent === 'service metrics' && tr.cells[4].textContent === 'service allowed')`),
      'the edge table does not list the service rule');
    ok('service rule in its table, the graph and the edge table');

    // The segment set: name, host, members, segments with writer and readers.
    const ss = EXPECT.segset;
    const set = await page.eval(`(() => { const tr = document.querySelector('#segsets tbody tr[data-segset="${ss.name}"]');
      return tr && { host: tr.cells[1].textContent, members: tr.cells[2].textContent,
        segments: [...tr.cells[3].querySelectorAll('li')].map((li) => li.textContent) }; })()`);
    check(set && set.host === ss.host && set.members === ss.members && sameSet(set.segments, ss.segments),
      `segment set ${JSON.stringify(set)}, want ${JSON.stringify(ss)}`);
    ok('segment set shown');

    // Keyboard on the tabs: arrows reach the new views, Home goes back.
    await page.eval(`document.querySelector('#tab-graph').focus()`);
    for (let i = 0; i < 3; i++) await page.key('ArrowRight', 'ArrowRight', 39);
    check(await page.eval(`document.activeElement.id === 'tab-segsets' && !document.querySelector('#view-segsets').hidden && document.querySelector('#view-graph').hidden`),
      'ArrowRight did not reach the segment sets view');
    await page.key('ArrowRight', 'ArrowRight', 39);
    check(await page.eval(`document.activeElement.id === 'tab-services' && !document.querySelector('#view-services').hidden`),
      'ArrowRight did not reach the services view');
    await page.key('Home', 'Home', 36);
    check(await page.eval(`document.activeElement.id === 'tab-graph' && !document.querySelector('#view-graph').hidden`),
      'Home did not go back to the graph');
    ok('tabs by keyboard (segment sets, services, back)');

    // Keyboard: Tab reaches the graph's first node, arrows move.
    await page.eval(`document.querySelector('#graph-filter').focus()`);
    await page.key('Tab', 'Tab', 9);
    const f1 = await page.eval(`document.activeElement.dataset.partition || ''`);
    check(f1 === [...EXPECT.nodes].sort()[0] || EXPECT.nodes.includes(f1), `Tab focused ${f1}`);
    await page.key('ArrowDown', 'ArrowDown', 40);
    const f2 = await page.eval(`document.activeElement.dataset.partition || ''`);
    check(f2 && f2 !== f1, `ArrowDown stayed on ${f1}`);
    await page.key('Enter', 'Enter', 13);
    const dim = await page.eval(`document.querySelectorAll('#graph .edge.dim').length`);
    await page.key('Escape', 'Escape', 27);
    check(await page.eval(`document.querySelectorAll('#graph .edge.dim').length === 0`), 'Escape did not show all edges');
    ok(`keyboard navigation (${f1} -> ${f2}, ${dim} edges dimmed on Enter)`);

    // The agent refuses a rogue open: it appears in the graph and the
    // audit view without reloading.
    const audits = await page.eval(`document.querySelectorAll('#audit tbody tr').length`);
    console.log('INJECT');
    const t0 = Date.now();
    check((await readLine()) === 'INJECTED', 'the test did not inject');
    const r = EXPECT.rogue;
    const sel = `#graph .edge.denied[data-channel="${r.channel}"][data-a="${r.partition}"]`;
    await page.until(`!!document.querySelector('${sel}')`, 15000, 'the refused open in the graph');
    const inGraph = Date.now() - t0;
    await page.until(`[...document.querySelectorAll('#audit tbody tr')].some((tr) => tr.textContent.includes('open_denied') && tr.textContent.includes('${r.partition}'))`,
      15000, 'the refused open in the audit view');
    check(await page.eval(`document.querySelectorAll('#audit tbody tr').length`) > audits, 'no new audit row');
    ok(`refused open shown live (graph ${inGraph} ms after the agent sent it)`);

    // A rule added through the API while the page is open: its api_change
    // event brings it, no reload.
    const lr = EXPECT.live_rule;
    // A mark on this document: a reload would lose it.
    await page.eval(`(window.parleyNoReload = 1)`);
    console.log('ADDRULE');
    check((await readLine()) === 'ADDED', 'the test did not add the rule');
    await page.until(`!!document.querySelector('#graph .edge.service.${lr.action}[data-channel="${lr.service}"][data-a="${lr.source}"][data-b="${lr.target}"]')`,
      15000, 'the new rule in the graph');
    await page.until(`!!document.querySelector('#services tbody tr[data-service="${lr.service}:${lr.source}>${lr.target}"] .action-${lr.action}')`,
      15000, 'the new rule in the services table');
    await page.until(`[...document.querySelectorAll('#edges tbody tr')].some((tr) => tr.cells[0].textContent === 'service ${lr.service}' && tr.cells[4].textContent === 'service denied')`,
      15000, 'the new rule in the edge table');
    check(await page.eval(`window.parleyNoReload === 1 && document.body.dataset.loaded === 'yes'`),
      'the page was reloaded');
    ok('service rule added live, shown without reload');

    // Chain verified.
    await page.until(`document.querySelector('#chain').textContent.startsWith('chain verified')`, 10000, 'the chain verdict');
    ok('audit chain verified');

    await page.screenshot(SHOT);
    ok(`screenshot ${SHOT}`);

    check(!page.requests.some((u) => u.endsWith('/favicon.ico')), 'the browser asked for /favicon.ico (401)');
    const foreign = page.requests.filter((u) => !u.startsWith(origin + '/'));
    check(foreign.length === 0, `requests outside ${origin}: ${JSON.stringify(foreign)}`);
    check(page.requests.length > 0, 'no request seen at all');
    ok(`${page.requests.length} requests, all to ${origin}`);
    // The console reads only documented routes: every /v1/ path it asked
    // for is one of openapi.json's (kept in the repository).
    const doc = JSON.parse(require('fs').readFileSync(
      require('path').join(__dirname, '..', '..', 'daemon', 'rpc', 'openapi.json'), 'utf8'));
    const routes = Object.keys(doc.paths).map((t) =>
      new RegExp('^' + t.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+') + '$'));
    const asked = [...new Set(page.requests.map((u) => new URL(u).pathname).filter((p) => p.startsWith('/v1/')))];
    const undocumented = asked.filter((p) => !routes.some((r) => r.test(p)));
    check(asked.includes('/v1/segsets') && asked.includes('/v1/services'), `segsets/services not read: ${JSON.stringify(asked)}`);
    check(undocumented.length === 0, `undocumented routes asked for: ${JSON.stringify(undocumented)}`);
    ok(`${asked.length} API routes asked for, all in openapi.json`);
    // The wrong token's 401s are expected; nothing else may fail (the
    // browser's own /favicon.ico would: the page names its icon).
    const errors = page.consoleErrors.filter((e) => !/status of 401/.test(e) ||
      page.requests.some((u) => u.endsWith('/favicon.ico')));
    check(errors.length === 0, `errors in the page: ${JSON.stringify(errors)}`);
    ok('no script errors (and no CSP violation)');
  } finally {
    await browser.close();
  }
}

main().then(() => { console.log('PASS'); process.exit(0); },
  (e) => { console.log(`FAIL ${e.message}`); process.exit(1); });
