// parley's web console: plain JavaScript, no library, nothing fetched but
// this server's own API (daemon/rpc/API.md). The token lives in this
// tab's sessionStorage; live updates come from GET /v1/events, read with
// fetch (EventSource cannot send the Authorization header).
'use strict';
(() => {
  const TOKEN_KEY = 'parley.token';
  // Nodes drawn at once: beyond it (a fleet of thousands) the graph asks
  // for a filter by host or name; 1,000 partitions still draw whole.
  const GRAPH_MAX = 2000;
  const AUDIT_KEEP = 5000;      // rows kept in memory
  const AUDIT_SHOW = 500;       // rows shown in the audit table
  const TABLE_NOW = 400;        // edge table rows made at once
  const PARTS_PAGE = 200;       // partitions table rows a page
  const TYPING_MS = 200;        // a filter waits this long after a key
  const SVGNS = 'http://www.w3.org/2000/svg';
  const $ = (s) => document.querySelector(s);

  const st = {
    hosts: [], policy: { version: 0, hosts: [] }, parts: [], grants: [],
    segsets: [], services: [],
    baselines: new Set(), audit: [], lastId: 0,
    open: new Map(),         // channel -> Set of partitions that opened it
    denied: new Map(),       // partition|channel -> audit row
    revoked: new Set(),      // channels revoked since
    quarantined: new Map(),  // partition -> file ('' when none named)
    tampered: new Map(),     // partition -> file
    stream: null, refreshTimer: 0, selected: null, tableAll: false,
    refreshWant: new Set(),  // lists to read again
    dirty: new Set(), renderTimer: 0,
    // How often each view was drawn (tests: an event redraws only what it
    // changes).
    renders: { hosts: 0, parts: 0, segsets: 0, services: 0, graph: 0, audit: 0 },
    partsPage: 0,
    auditRows: [], auditGen: 0,  // the audit view: the server's answer
  };

  // ---- the API ---------------------------------------------------------
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class Refused extends Error {}

  async function api(path, opts = {}) {
    const r = await fetch(path, {
      method: opts.method || 'GET',
      headers: { Authorization: 'Bearer ' + token() },
      cache: 'no-store', credentials: 'omit', redirect: 'error',
      signal: opts.signal,
    });
    if (r.status === 401) throw new Refused('the server refused this token');
    const body = await r.json();
    if (!r.ok) {
      const e = body && body.error;
      throw new Error(e ? `${e.code}: ${e.message}` : `HTTP ${r.status}`);
    }
    return body;
  }

  // Every page of a paginated list.
  async function all(path) {
    const out = [];
    let after = null;
    for (;;) {
      const sep = path.includes('?') ? '&' : '?';
      const q = `${path}${sep}limit=1000` +
        (after !== null ? `&after=${encodeURIComponent(after)}` : '');
      const page = await api(q);
      out.push(...page.items);
      if (page.next === null || page.next === undefined || !page.items.length) return out;
      after = page.next;
    }
  }

  // ---- state from audit rows -------------------------------------------
  function apply(row) {
    const p = row.partition, c = row.channel;
    switch (row.event) {
      case 'open_allowed':
        if (!st.open.has(c)) st.open.set(c, new Set());
        st.open.get(c).add(p);
        st.revoked.delete(c);
        break;
      case 'open_denied':
        st.denied.set(`${p}|${c}`, row);
        if (row.reason === 'INTEGRITY') st.tampered.set(p, row.file || '');
        break;
      case 'quarantine':
        st.quarantined.set(p, row.file || '');
        break;
      case 'revoke':
        st.open.delete(c);
        st.revoked.add(c);
        break;
      case 'partition_state':
        if (/-> (stopped|failed|quarantined)/.test(row.detail)) {
          for (const [ch, ends] of st.open) {
            ends.delete(p);
            if (!ends.size) st.open.delete(ch);
          }
        }
        break;
      default:
        break;
    }
  }

  // What a live row changes: the graph's state (drawn from the trail),
  // lists to read again (api_change names its route), and the audit view.
  const GRAPH_EVENTS = new Set(['open_allowed', 'open_denied', 'quarantine', 'revoke', 'partition_state']);
  const LIST_EVENTS = {
    partition_state: ['parts'], quarantine: ['parts'], orch_defined: ['parts'],
    host_joined: ['hosts', 'policy'], baseline_enrolled: ['baselines'],
  };
  // An api_change's detail is "METHOD /v1/ROUTE... -> STATUS ...".
  function changedLists(detail) {
    const m = /^[A-Z]+ \/v1\/([a-z]+)/.exec(detail || '');
    switch (m && m[1]) {
      case 'hosts': return ['hosts', 'policy', 'parts'];
      case 'partitions': return ['parts', 'policy'];
      case 'grants': return ['grants', 'policy'];
      case 'segsets': return ['segsets', 'policy'];
      case 'services': return ['services', 'policy'];
      case 'baselines': return ['baselines'];
      case 'tokens': case 'audit': return [];
      default: return LISTS;
    }
  }

  function takeRow(row, live) {
    if (row.id <= st.lastId) return;
    st.lastId = row.id;
    st.audit.push(row);
    if (st.audit.length > AUDIT_KEEP) st.audit.splice(0, st.audit.length - AUDIT_KEEP);
    apply(row);
    if (!live) return;
    if (GRAPH_EVENTS.has(row.event)) {
      st.dirty.add('graph');
      st.dirty.add('parts');    // integrity and state
    }
    const lists = row.event === 'api_change' ? changedLists(row.detail) : LIST_EVENTS[row.event];
    if (lists && lists.length) scheduleRefresh(lists);
    auditLive(row);
    scheduleRender();
  }

  // ---- loading -----------------------------------------------------------
  const LISTS = ['hosts', 'policy', 'parts', 'grants', 'baselines', 'segsets', 'services'];
  const LOAD = {
    hosts: async () => { st.hosts = await all('/v1/hosts'); },
    policy: async () => { st.policy = await api('/v1/policy'); },
    parts: async () => { st.parts = await all('/v1/partitions'); },
    grants: async () => { st.grants = await all('/v1/grants'); },
    baselines: async () => { st.baselines = new Set((await all('/v1/baselines')).map((b) => b.partition)); },
    segsets: async () => { st.segsets = await all('/v1/segsets'); },
    services: async () => { st.services = await all('/v1/services'); },
  };
  // The views drawn from each list.
  const VIEWS_OF = {
    hosts: ['hosts'], policy: ['hosts'], parts: ['parts', 'graph'], grants: ['graph'],
    baselines: ['parts', 'graph'], segsets: ['segsets'], services: ['services', 'graph'],
  };

  async function loadLists(names = LISTS) {
    await Promise.all(names.map((n) => LOAD[n]()));
    for (const n of names) for (const v of VIEWS_OF[n]) st.dirty.add(v);
  }

  async function loadAudit() {
    for (;;) {
      const page = await api(`/v1/audit?limit=1000&after=${st.lastId}`);
      for (const row of page.items) takeRow(row, false);
      if (page.next === null || !page.items.length) return;
    }
  }

  // Read the lists named again, once for a burst of rows.
  function scheduleRefresh(names) {
    for (const n of names) st.refreshWant.add(n);
    if (st.refreshTimer) return;
    st.refreshTimer = setTimeout(async () => {
      st.refreshTimer = 0;
      const want = [...st.refreshWant];
      st.refreshWant.clear();
      try {
        await loadLists(want);
        scheduleRender();
      } catch (e) {
        failed(e);
      }
    }, 150);
  }

  // Draw what changed, once for a burst of rows.
  function scheduleRender() {
    if (st.renderTimer) return;
    st.renderTimer = setTimeout(() => {
      st.renderTimer = 0;
      const views = st.dirty;
      st.dirty = new Set();
      render(views);
    }, 30);
  }

  // ---- the event stream ----------------------------------------------
  function setLive(on, text) {
    const el = $('#live');
    el.textContent = text;
    el.classList.toggle('on', on);
    document.body.dataset.live = on ? 'on' : 'off';
  }

  async function stream() {
    const ctl = new AbortController();
    st.stream = ctl;
    try {
      let r = await fetch(`/v1/events?after=${st.lastId}`, {
        headers: { Authorization: 'Bearer ' + token() },
        cache: 'no-store', credentials: 'omit', signal: ctl.signal,
      });
      if (r.status === 409) {
        // Too far behind to replay: start live, the table has what it has.
        r = await fetch('/v1/events', {
          headers: { Authorization: 'Bearer ' + token() },
          cache: 'no-store', credentials: 'omit', signal: ctl.signal,
        });
      }
      if (r.status === 401) throw new Refused('the server refused this token');
      if (!r.ok || !r.body) throw new Error(`events: HTTP ${r.status}`);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          event(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
      if (e instanceof Refused) {
        logout(e.message);
        return;
      }
    }
    if (st.stream !== ctl || ctl.signal.aborted) return;
    setLive(false, 'reconnecting…');
    setTimeout(() => { if (st.stream === ctl) stream(); }, 2000);
  }

  function event(block) {
    let type = 'message', data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) type = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
    }
    if (type === 'audit') takeRow(JSON.parse(data), true);
    else if (type === 'ready') setLive(true, 'live');
    else if (type === 'dropped') setLive(false, 'dropped by the server: ' + JSON.parse(data).reason);
  }

  // ---- rendering: small helpers --------------------------------------------
  function el(tag, attrs = {}, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svg(tag, attrs = {}, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function row(cells, cls) {
    const tr = el('tr', cls ? { class: cls } : {});
    for (const c of cells) {
      const td = typeof c === 'object' ? el('td', c.attrs || {}, c.text) : el('td', {}, c);
      tr.append(td);
    }
    return tr;
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  // A long table: the first rows now, the rest in slices after the frame
  // is painted (the graph beside it is not kept waiting); a newer call
  // cancels the slices of an older one.
  let sliceGen = 0;
  function fillSliced(tbody, rows) {
    const gen = ++sliceGen;
    tbody.replaceChildren(...rows.slice(0, 200));
    let i = 200;
    const more = () => {
      if (gen !== sliceGen || i >= rows.length) {
        if (gen === sliceGen) tbody.dataset.complete = 'yes';
        return;
      }
      tbody.append(...rows.slice(i, i + 500));
      i += 500;
      setTimeout(more, 0);
    };
    tbody.dataset.complete = rows.length <= 200 ? 'yes' : 'no';
    setTimeout(more, 0);
  }

  function integrity(p) {
    if (p.state === 'quarantined' || st.quarantined.has(p.name)) {
      const f = st.quarantined.get(p.name);
      return ['quarantined', f ? `quarantined (${f})` : 'quarantined'];
    }
    if (st.tampered.has(p.name)) {
      const f = st.tampered.get(p.name);
      return ['tampered', f ? `tampered (${f})` : 'tampered'];
    }
    return st.baselines.has(p.name) ? ['matches', 'matches its baseline']
      : ['unknown', 'no baseline yet'];
  }

  // ---- hosts and partitions -----------------------------------------------
  function renderHosts() {
    const pol = new Map((st.policy.hosts || []).map((h) => [h.host, h]));
    $('#policy-version').textContent = `Policy version ${st.policy.version}`;
    fill($('#hosts tbody'), st.hosts.map((h) => {
      const p = pol.get(h.name) || { version: 0, acked: h.policy_acked };
      const lag = Math.max(0, p.version - p.acked);
      return row([h.name, h.connected ? 'connected' : 'not connected',
        String(p.acked), String(p.version),
        { text: lag ? `${lag} behind` : 'up to date', attrs: lag ? { class: 'state-revoked' } : {} },
        // "" until its agent says hello with a version.
        h.agent_version ? h.agent_version : { text: 'unknown', attrs: { class: 'unknown' } },
        updateCell(h),
        h.libvirt_uri || '—']);
    }));
  }

  function updateCell(h) {
    const u = h.update;
    if (!u) return { text: 'none asked for', attrs: { class: 'unknown' } };
    const text = (h.update_state || `${u.version} ${u.state}`) +
      (u.state === 'receiving' && u.size ? ` (${Math.floor(100 * u.received / u.size)}%)` : '') +
      (u.reason ? `: ${u.reason}` : '');
    return { text, attrs: { class: `update-${u.state}` } };
  }

  // ---- segment sets and service rules -------------------------------------
  // A segment's readers: those named, else every member but the writer
  // (common/segset.c's default).
  function readers(set, seg) {
    if (Array.isArray(seg.readers) && seg.readers.length) return seg.readers;
    return (set.members || []).filter((m) => m !== seg.writer);
  }

  function renderSegsets() {
    fill($('#segsets tbody'), st.segsets.map((s) => {
      const set = s.set || {};
      const list = el('ul');
      for (const seg of set.segments || []) {
        const what = [seg.kind, seg.queue ? `queue ${seg.queue}` : '', String(seg.size)]
          .filter(Boolean).join(', ');
        const rd = readers(set, seg);
        list.append(el('li', { 'data-segment': seg.name },
          `${seg.name} (${what}): ${seg.writer} → ${rd.join(', ') || 'no reader'}`));
      }
      const tr = row([s.name, s.host, (set.members || []).join(', '), '', String(s.version)]);
      tr.dataset.segset = s.name;
      tr.children[3].append(list);
      return tr;
    }));
  }

  function renderServices() {
    fill($('#services tbody'), st.services.map((r) => {
      const tr = row([String(r.id), r.source, r.target, r.service,
        { text: r.action, attrs: { class: `action-${r.action}` } }, String(r.version)]);
      tr.dataset.service = `${r.service}:${r.source}>${r.target}`;
      return tr;
    }));
  }

  // A page of the partitions that match the filter (name, host or state):
  // ten thousand rows at once would cost seconds to lay out.
  function renderParts() {
    const f = $('#parts-filter').value.trim().toLowerCase();
    const list = f ? st.parts.filter((p) => matches(f, p.name, p.host, p.state)) : st.parts;
    const pages = Math.max(1, Math.ceil(list.length / PARTS_PAGE));
    st.partsPage = Math.min(Math.max(st.partsPage, 0), pages - 1);
    const from = st.partsPage * PARTS_PAGE;
    const shown = list.slice(from, from + PARTS_PAGE);
    fill($('#parts tbody'), shown.map((p) => {
      const [cls, text] = integrity(p);
      const tr = row([p.name, p.host, p.backend + (p.vmm_backend ? ` (${p.vmm_backend})` : ''),
        { text: p.state, attrs: { class: `state-${p.state}` } },
        { text, attrs: { class: `integrity-${cls}` } }]);
      tr.dataset.partition = p.name;
      return tr;
    }));
    $('#parts-count').textContent = list.length
      ? `${from + 1}–${from + shown.length} of ${list.length} partitions (page ${st.partsPage + 1} of ${pages})`
      : (f ? 'no partition matches' : 'no partitions');
    $('#parts-prev').disabled = st.partsPage === 0;
    $('#parts-next').disabled = st.partsPage >= pages - 1;
  }

  // ---- the audit trail ------------------------------------------------------
  // The audit view's filters, as GET /v1/audit takes them (exact names;
  // the server applies them, daemon/rpc/API.md).
  function auditFilter() {
    const f = new FormData($('#audit-filter'));
    const ms = (k) => { const v = f.get(k); return v ? new Date(v).getTime() : 0; };
    return {
      partition: f.get('partition').trim(), event: f.get('event').trim(),
      reason: f.get('reason').trim(), since_ms: ms('since'), until_ms: ms('until'),
    };
  }

  function auditMatches(f, a) {
    return (!f.partition || a.partition === f.partition) && (!f.event || a.event === f.event) &&
      (!f.reason || a.reason === f.reason) && (!f.since_ms || a.time_ms >= f.since_ms) &&
      (!f.until_ms || a.time_ms <= f.until_ms);
  }

  // The newest AUDIT_SHOW rows that match, asked of the server.
  async function auditQuery() {
    const f = auditFilter(), gen = ++st.auditGen;
    const q = new URLSearchParams({ order: 'desc', limit: String(AUDIT_SHOW) });
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, String(v));
    const out = $('#audit-status');
    try {
      const page = await api(`/v1/audit?${q}`);
      if (gen !== st.auditGen) return;   // a newer query went out
      st.auditRows = page.items;
      out.textContent = `${page.items.length}${page.next !== null ? '+' : ''} rows`;
      out.classList.remove('error');
    } catch (e) {
      if (e instanceof Refused) throw e;
      if (gen !== st.auditGen) return;
      st.auditRows = [];
      out.textContent = e.message;
      out.classList.add('error');
    }
    renderAudit();
  }

  // A live row: on top of the view when the filters take it.
  function auditLive(a) {
    if (!auditMatches(auditFilter(), a) || st.auditRows.some((r) => r.id >= a.id)) return;
    st.auditRows.unshift(a);
    if (st.auditRows.length > AUDIT_SHOW) st.auditRows.length = AUDIT_SHOW;
    st.auditFresh = a.id;
    st.dirty.add('audit');
  }

  function renderAudit() {
    fill($('#audit tbody'), st.auditRows.map((a) => row([String(a.id),
      new Date(a.time_ms).toISOString(), a.host, a.event, a.partition, a.channel,
      { text: a.reason, attrs: a.reason ? { class: 'state-denied' } : {} },
      a.file, { text: a.detail, attrs: { class: 'detail' } }],
    st.auditFresh && a.id === st.auditFresh ? 'fresh' : '')));
  }

  async function verify() {
    const out = $('#chain');
    out.textContent = 'verifying…';
    try {
      const v = await api('/v1/audit/verify', { method: 'POST' });
      out.textContent = v.ok ? `chain verified: ${v.rows} rows`
        : `chain BROKEN at id ${v.first_bad}: ${v.message}`;
      out.className = v.ok ? 'state-open' : 'state-denied';
    } catch (e) {
      out.textContent = 'could not verify: ' + e.message;
    }
  }

  // ---- the channel graph ---------------------------------------------------
  function matches(f, ...names) {
    return !f || names.some((n) => n && n.toLowerCase().includes(f));
  }

  function edgeState(g) {
    if (st.open.has(g.channel)) return 'open';
    for (const p of [g.endpoint_a, g.endpoint_b])
      if (st.denied.has(`${p}|${g.channel}`)) return 'denied';
    if (st.revoked.has(g.channel)) return 'revoked';
    return 'granted';
  }

  // The host chosen in the graph's host list ('' = every host).
  function renderHostChoice() {
    const sel = $('#graph-host'), was = sel.value;
    const names = [...new Set(st.parts.map((p) => p.host).concat(st.hosts.map((h) => h.name)))].sort();
    if (sel.options.length === names.length + 1 &&
      names.every((n, i) => sel.options[i + 1].value === n)) return;
    sel.replaceChildren(el('option', { value: '' }, 'every host'),
      ...names.map((n) => el('option', { value: n }, n)));
    sel.value = names.includes(was) ? was : '';
  }

  function renderGraph() {
    renderHostChoice();
    const f = $('#graph-filter').value.trim().toLowerCase();
    const host = $('#graph-host').value;
    const byName = new Map(st.parts.map((p) => [p.name, p]));
    const hostOf = (n) => (byName.get(n) || {}).host;
    // On a chosen host: what touches one of its partitions.
    const onHost = (...ends) => !host || ends.some((n) => hostOf(n) === host);
    const grants = st.grants.filter((g) => onHost(g.endpoint_a, g.endpoint_b) &&
      matches(f, g.channel, g.endpoint_a, g.endpoint_b, hostOf(g.endpoint_a), hostOf(g.endpoint_b)));
    // A partition is drawn if it matches, or an edge drawn touches it.
    const want = new Set();
    for (const p of st.parts) if ((!host || p.host === host) && matches(f, p.name, p.host)) want.add(p.name);
    for (const g of grants) { want.add(g.endpoint_a); want.add(g.endpoint_b); }
    const rules = st.services.filter((r) => onHost(r.source, r.target) &&
      matches(f, r.service, r.source, r.target, hostOf(r.source)));
    for (const r of rules) { want.add(r.source); want.add(r.target); }
    const denied = [...st.denied.values()].filter((d) => onHost(d.partition) &&
      matches(f, d.partition, d.channel, d.host));
    for (const d of denied) want.add(d.partition);
    // Endpoints the store has no partition row for (a policy imported for
    // agents that run their own partitions): drawn under an unknown host.
    const known = new Set(st.parts.map((p) => p.name));
    const extra = [...want].filter((n) => n && !known.has(n)).map((n) =>
      ({ name: n, host: '(host unknown)', state: 'unknown', backend: '' }));
    const parts = st.parts.filter((p) => want.has(p.name)).concat(extra);
    const g = $('#graph');
    const count = $('#graph-count');
    if (parts.length > GRAPH_MAX) {
      g.replaceChildren(svg('title', { id: 'graph-title' }, 'Channel graph (too large to draw)'));
      g.setAttribute('width', 0);
      g.setAttribute('height', 0);
      count.textContent = `${parts.length} partitions, ${grants.length} grants: ` +
        `choose a host or filter by name or channel to draw at most ${GRAPH_MAX}`;
      fillSliced($('#edges tbody'), []);
      $('#edges-more').hidden = true;
      document.body.dataset.graph = `over/${parts.length}/${grants.length}`;
      document.body.dataset.graphAt = String(Math.round(performance.now()));
      return;
    }
    count.textContent = `${parts.length} partitions, ${grants.length} grants, ${rules.length} service rules`;

    // Layout: a column per host (wrapped every 40 partitions), partitions
    // stacked in it.
    const hosts = new Map();
    for (const p of parts) {
      if (!hosts.has(p.host)) hosts.set(p.host, []);
      hosts.get(p.host).push(p);
    }
    const NW = 150, NH = 26, GAP = 10, PER = 40, COLW = NW + 70, TOP = 40;
    const pos = new Map();
    // Hosts side by side, wrapped into rows as wide as the figure, so
    // that edges stay short (long ones cost the most to paint).
    const maxW = Math.max(($('#graph-fig').clientWidth || 900) - 20, 600);
    let x = 20, top = TOP, rowH = 0, width = 0;
    const frag = [];
    frag.push(svg('title', { id: 'graph-title' },
      `Channel graph: ${parts.length} partitions on ${hosts.size} hosts, ${grants.length} grants, ${rules.length} service rules`));
    const defs = svg('defs');
    for (const k of ['granted', 'open', 'denied', 'revoked', 'service-allow', 'service-deny']) {
      const m = svg('marker', { id: `arrow-${k}`, viewBox: '0 0 10 10', refX: 10, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
      m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: `arrowhead ${k}` }));
      defs.append(m);
    }
    frag.push(defs);
    const nodes = [];
    const hostNames = [...hosts.keys()].sort();
    hostNames.forEach((h) => {
      const ps = hosts.get(h).sort((a, b) => a.name.localeCompare(b.name));
      const cols = Math.ceil(ps.length / PER);
      const w = cols * COLW - 40, hh = Math.min(ps.length, PER) * (NH + GAP) + 30;
      if (x > 20 && x + w > maxW) {
        x = 20;
        top += rowH + 30;
        rowH = 0;
      }
      const box = svg('g', { class: 'host', 'data-host': h });
      box.append(svg('rect', { class: 'hostbox', x: x - 10, y: top - 30, width: w + 20, height: hh + 10, rx: 6 }));
      box.append(svg('text', { class: 'hostlabel', x, y: top - 12 }, h));
      frag.push(box);
      ps.forEach((p, i) => {
        const cx = x + Math.floor(i / PER) * COLW, cy = top + (i % PER) * (NH + GAP);
        pos.set(p.name, { x: cx, y: cy });
        const [icls, itext] = integrity(p);
        const quar = icls === 'quarantined';
        const n = svg('g', {
          class: `node${quar ? ' quarantined' : ''}`, tabindex: '-1', role: 'button',
          'data-partition': p.name, 'data-host': h,
          'aria-label': `partition ${p.name} on ${h}, ${p.state}, integrity ${itext}`,
        });
        n.append(svg('rect', { x: cx, y: cy, width: NW, height: NH, rx: 4 }));
        n.append(svg('text', { x: cx + 8, y: cy + 17 }, (quar ? '⚠ ' : '') + p.name));
        nodes.push(n);
      });
      x += cols * COLW + 20;
      width = Math.max(width, x);
      rowH = Math.max(rowH, hh);
    });
    const height = top + rowH;
    const edgeRows = [];
    const edges = svg('g', { class: 'edges' });
    const link = (a, b, other) => {
      const pa = pos.get(a), pb = pos.get(b);
      if (!pa || !pb) return null;
      const ax = pa.x + (pb.x > pa.x ? NW : pb.x < pa.x ? 0 : NW), ay = pa.y + NH / 2;
      const bx = pb.x + (pb.x > pa.x ? 0 : pb.x < pa.x ? NW : NW), by = pb.y + NH / 2;
      let bend = pa.x === pb.x ? 60 + Math.abs(ay - by) / 4 : 0;
      // Service rules bend further out than grants, each pair of ends
      // apart from the other direction's, so none hides another.
      if (other) bend = pa.x === pb.x ? bend + (a < b ? 30 : 55) : 0;
      if (other && pa.x !== pb.x) return `M${ax},${ay + 6} C${(ax + bx) / 2},${ay + 40} ${(ax + bx) / 2},${by + 40} ${bx},${by + 6}`;
      return `M${ax},${ay} C${ax + bend + (bx - ax) / 3},${ay} ${bx + bend - (bx - ax) / 3},${by} ${bx},${by}`;
    };
    for (const gr of grants) {
      const d = link(gr.endpoint_a, gr.endpoint_b);
      if (!d) continue;
      const s = edgeState(gr);
      const attrs = { d, class: `edge ${s}`, 'data-channel': gr.channel,
        'data-a': gr.endpoint_a, 'data-b': gr.endpoint_b, 'data-state': s };
      if (gr.direction !== 'b_to_a') attrs['marker-end'] = `url(#arrow-${s})`;
      if (gr.direction !== 'a_to_b') attrs['marker-start'] = `url(#arrow-${s})`;
      const path = svg('path', attrs);
      path.append(svg('title', {}, `${gr.channel}: ${gr.endpoint_a} ${arrow(gr.direction)} ${gr.endpoint_b}, ${s}`));
      edges.append(path);
      edgeRows.push(row([gr.channel, gr.endpoint_a, gr.endpoint_b, gr.direction,
        { text: s, attrs: { class: `state-${s}` } }]));
    }
    // Service rules: source -> target, their own style; the edge bends the
    // other way from a grant between the same two, so both stay visible.
    for (const r of rules) {
      const d = link(r.source, r.target, true);
      if (!d) continue;
      const path = svg('path', { d, class: `edge service ${r.action}`, 'data-kind': 'service',
        'data-channel': r.service, 'data-a': r.source, 'data-b': r.target, 'data-state': r.action,
        'marker-end': `url(#arrow-service-${r.action})` });
      path.append(svg('title', {}, `service ${r.service}: ${r.source} → ${r.target}, ${r.action}`));
      edges.append(path);
      edgeRows.push(row([`service ${r.service}`, r.source, r.target, 'a_to_b',
        { text: r.action === 'allow' ? 'service allowed' : 'service denied',
          attrs: { class: `action-${r.action}` } }]));
    }
    // Refused opens of a channel the partition has no grant for: a stub
    // from the partition, named.
    const granted = new Set();
    for (const gr of st.grants) {
      granted.add(`${gr.endpoint_a}|${gr.channel}`);
      granted.add(`${gr.endpoint_b}|${gr.channel}`);
    }
    for (const dn of denied) {
      // One of the grant's own ends refused: its edge shows it.
      if (granted.has(`${dn.partition}|${dn.channel}`)) continue;
      const p = pos.get(dn.partition);
      if (!p) continue;
      const path = svg('path', {
        d: `M${p.x + NW},${p.y + NH / 2} l40,-14`, class: 'edge denied',
        'data-channel': dn.channel, 'data-a': dn.partition, 'data-b': '', 'data-state': 'denied',
      });
      path.append(svg('title', {}, `${dn.partition} asked for ${dn.channel}: refused (${dn.reason})`));
      edges.append(path);
      edges.append(svg('text', { class: 'edgelabel', x: p.x + NW + 42, y: p.y + NH / 2 - 14 },
        `${dn.channel} ✗ ${dn.reason}`));
      edgeRows.push(row([dn.channel, dn.partition, '—', 'asked',
        { text: `refused (${dn.reason})`, attrs: { class: 'state-denied' } }]));
    }
    frag.push(edges, ...nodes);
    // A redraw (a live event, a filter's late timer) replaces every node:
    // the partition that had the keyboard keeps it, so Escape and the
    // arrows still act on it.
    const had = document.activeElement;
    const focused = had && g.contains(had) && had.dataset ? had.dataset.partition : '';
    g.replaceChildren(...frag);
    g.setAttribute('width', Math.max(width + 120, 300));
    g.setAttribute('height', height + 20);
    // A large graph's table is made when asked for: thousands of rows
    // cost more to lay out than the graph itself.
    const big = edgeRows.length > TABLE_NOW;
    g.classList.toggle('large', grants.length > TABLE_NOW);
    const more = $('#edges-more');
    more.hidden = !big || st.tableAll;
    more.textContent = `Show all ${edgeRows.length} edges in the table`;
    fillSliced($('#edges tbody'), big && !st.tableAll ? edgeRows.slice(0, TABLE_NOW) : edgeRows);
    // The first node takes Tab; arrows move from there.
    const first = g.querySelector('.node');
    const again = focused ? nodes.find((n) => n.dataset.partition === focused) : null;
    if (again) {
      again.setAttribute('tabindex', '0');
      again.focus();
    } else if (first) first.setAttribute('tabindex', '0');
    if (st.selected) select(st.selected, false);
    document.body.dataset.graph = `${parts.length}/${grants.length}`;
    // When this drawing was done, from the page's start (bench/).
    document.body.dataset.graphAt = String(Math.round(performance.now()));
  }

  function arrow(dir) {
    return dir === 'a_to_b' ? '→' : dir === 'b_to_a' ? '←' : '↔';
  }

  // Keyboard: arrows move between partitions (up/down in a host, left/right
  // across hosts), Enter shows only its edges, Escape shows all again.
  function graphKeys(e) {
    const cur = e.target.closest && e.target.closest('.node');
    if (!cur) return;
    const all = [...$('#graph').querySelectorAll('.node')];
    const i = all.indexOf(cur);
    let next = null;
    if (e.key === 'ArrowDown') next = all[i + 1];
    else if (e.key === 'ArrowUp') next = all[i - 1];
    else if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      const h = cur.dataset.host;
      const hosts = [...new Set(all.map((n) => n.dataset.host))];
      const hi = hosts.indexOf(h) + (e.key === 'ArrowRight' ? 1 : -1);
      if (hi >= 0 && hi < hosts.length) next = all.find((n) => n.dataset.host === hosts[hi]);
    } else if (e.key === 'Home') next = all[0];
    else if (e.key === 'End') next = all[all.length - 1];
    else if (e.key === 'Enter' || e.key === ' ') {
      select(st.selected === cur.dataset.partition ? null : cur.dataset.partition, true);
      e.preventDefault();
      return;
    } else if (e.key === 'Escape') {
      select(null, true);
      return;
    }
    if (next) {
      e.preventDefault();
      cur.setAttribute('tabindex', '-1');
      next.setAttribute('tabindex', '0');
      next.focus();
    }
  }

  function select(name, announce) {
    st.selected = name;
    const g = $('#graph');
    for (const e of g.querySelectorAll('.edge')) {
      e.classList.toggle('dim', !!name && e.dataset.a !== name && e.dataset.b !== name);
    }
    if (announce) {
      $('#graph-count').textContent = name ? `showing the channels of ${name} (Escape: all)` : 'showing all channels';
    }
  }

  // ---- tabs ----------------------------------------------------------------
  function tabs() {
    const list = [...document.querySelectorAll('[role=tab]')];
    const show = (t) => {
      for (const o of list) {
        const on = o === t;
        o.setAttribute('aria-selected', on);
        o.tabIndex = on ? 0 : -1;
        document.getElementById(o.getAttribute('aria-controls')).hidden = !on;
      }
    };
    for (const t of list) {
      t.addEventListener('click', () => show(t));
      t.addEventListener('keydown', (e) => {
        const i = list.indexOf(t);
        const j = e.key === 'ArrowRight' ? (i + 1) % list.length
          : e.key === 'ArrowLeft' ? (i + list.length - 1) % list.length
            : e.key === 'Home' ? 0 : e.key === 'End' ? list.length - 1 : -1;
        if (j < 0) return;
        e.preventDefault();
        show(list[j]);
        list[j].focus();
      });
    }
  }

  const RENDER = {
    hosts: renderHosts, parts: renderParts, segsets: renderSegsets,
    services: renderServices, graph: renderGraph, audit: renderAudit,
  };

  function render(views) {
    for (const v of Object.keys(RENDER)) {
      if (!views.has(v)) continue;
      st.dirty.delete(v);
      RENDER[v]();
      st.renders[v]++;
    }
    document.body.dataset.renders = JSON.stringify(st.renders);
  }

  function renderAll() {
    render(new Set(Object.keys(RENDER)));
  }

  // Input that redraws a view: once typing pauses.
  function onTyping(input, fn) {
    let t = 0;
    input.addEventListener('input', () => {
      clearTimeout(t);
      t = setTimeout(fn, TYPING_MS);
    });
  }

  // ---- login ---------------------------------------------------------------
  function failed(e) {
    if (e instanceof Refused) logout(e.message);
    else setLive(false, 'error: ' + e.message);
  }

  async function start() {
    $('#login').hidden = true;
    $('#app').hidden = false;
    $('#logout').hidden = false;
    setLive(false, 'loading…');
    try {
      await loadLists();
      await loadAudit();
      await auditQuery();
      renderAll();
      document.body.dataset.loaded = 'yes';
      verify();
      stream();
    } catch (e) {
      failed(e);
    }
  }

  function logout(why) {
    if (st.stream) st.stream.abort();
    st.stream = null;
    sessionStorage.removeItem(TOKEN_KEY);
    Object.assign(st, { audit: [], lastId: 0, open: new Map(), denied: new Map(),
      revoked: new Set(), quarantined: new Map(), tampered: new Map(), auditRows: [] });
    $('#app').hidden = true;
    $('#logout').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = why || '';
    document.body.dataset.loaded = 'no';
    setLive(false, 'not connected');
    $('#token').focus();
  }

  async function login(e) {
    e.preventDefault();
    const t = $('#token').value.trim();
    $('#token').value = '';
    if (!/^prl_[0-9a-f]{64}$/.test(t)) {
      $('#login-error').textContent = 'A token is prl_ and 64 hexadecimal digits.';
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, t);
    try {
      await api('/v1/hosts?limit=1');
    } catch (err) {
      logout(err instanceof Refused ? 'The server refused this token.' : err.message);
      return;
    }
    $('#login-error').textContent = '';
    start();
  }

  document.addEventListener('DOMContentLoaded', () => {
    tabs();
    $('#login-form').addEventListener('submit', login);
    $('#logout').addEventListener('click', () => logout(''));
    onTyping($('#graph-filter'), renderGraph);
    $('#graph-host').addEventListener('change', renderGraph);
    $('#edges-more').addEventListener('click', () => { st.tableAll = true; renderGraph(); });
    $('#graph').addEventListener('keydown', graphKeys);
    onTyping($('#parts-filter'), () => { st.partsPage = 0; renderParts(); });
    $('#parts-prev').addEventListener('click', () => { st.partsPage--; renderParts(); });
    $('#parts-next').addEventListener('click', () => { st.partsPage++; renderParts(); });
    onTyping($('#audit-filter'), () => auditQuery().catch(failed));
    $('#audit-filter').addEventListener('submit', (e) => e.preventDefault());
    $('#verify').addEventListener('click', verify);
    if (token()) start();
    else logout('');
  });
})();
