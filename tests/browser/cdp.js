// A minimal Chrome DevTools Protocol client over --remote-debugging-pipe
// (file descriptors 3 and 4, messages ended by NUL): no WebSocket, no npm
// package, only node and Debian's chromium. Used by console_e2e.js and
// bench/console_bench.js.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

class Browser {
  // Start headless chromium on an empty profile in a fresh directory.
  static async launch(exe) {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-chromium-'));
    const args = [
      '--headless=new', '--disable-gpu', '--no-first-run',
      '--no-default-browser-check', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-extensions',
      '--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication',
      '--metrics-recording-only', '--password-store=basic', '--use-mock-keychain',
      `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank',
    ];
    // Root (CI, containers) cannot use chromium's sandbox.
    if (process.getuid && process.getuid() === 0) args.unshift('--no-sandbox');
    const child = spawn(exe, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 65536) stderr = stderr.slice(-32768); });
    const b = new Browser(child, profile);
    b.stderr = () => stderr;
    await new Promise((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    return b;
  }

  constructor(child, profile) {
    this.child = child;
    this.profile = profile;
    this.out = child.stdio[3];
    this.in = child.stdio[4];
    this.id = 0;
    this.pending = new Map();
    this.listeners = [];
    let buf = Buffer.alloc(0);
    this.in.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let z;
      while ((z = buf.indexOf(0)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, z).toString('utf8'));
        buf = buf.subarray(z + 1);
        this.dispatch(msg);
      }
    });
    child.on('exit', (code, sig) => {
      for (const [, p] of this.pending) p.reject(new Error(`chromium exited (${code ?? sig})`));
      this.pending.clear();
    });
  }

  dispatch(msg) {
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
      return;
    }
    for (const l of this.listeners) l(msg);
  }

  send(method, params = {}, sessionId) {
    const id = ++this.id;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.out.write(JSON.stringify(msg) + '\0');
    });
  }

  on(fn) { this.listeners.push(fn); }

  // The first page, attached (flat session).
  async page() {
    const { targetInfos } = await this.send('Target.getTargets');
    let t = targetInfos.find((x) => x.type === 'page');
    if (!t) {
      const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
      t = { targetId };
    }
    const { sessionId } = await this.send('Target.attachToTarget', { targetId: t.targetId, flatten: true });
    return new Page(this, sessionId);
  }

  async close() {
    try { await this.send('Browser.close'); } catch (e) { /* gone already */ }
    await new Promise((r) => { if (this.child.exitCode !== null) r(); else this.child.once('exit', r); });
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

class Page {
  constructor(browser, sessionId) {
    this.b = browser;
    this.s = sessionId;
    this.requests = [];
    this.consoleErrors = [];
    this.loaded = 0;
    browser.on((m) => {
      if (m.sessionId !== sessionId) return;
      if (m.method === 'Network.requestWillBeSent') this.requests.push(m.params.request.url);
      else if (m.method === 'Page.loadEventFired') this.loaded++;
      else if (m.method === 'Runtime.exceptionThrown') this.consoleErrors.push(m.params.exceptionDetails.text + ' ' + JSON.stringify(m.params.exceptionDetails.exception && m.params.exceptionDetails.exception.description));
      else if (m.method === 'Log.entryAdded' && m.params.entry.level === 'error') this.consoleErrors.push(m.params.entry.text);
    });
  }

  send(method, params) { return this.b.send(method, params, this.s); }

  async init(width, height) {
    await this.send('Page.enable');
    await this.send('Runtime.enable');
    await this.send('Network.enable');
    await this.send('Log.enable');
    await this.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
  }

  async goto(url) {
    const before = this.loaded;
    await this.send('Page.navigate', { url });
    await this.until(() => this.loaded > before, 20000, `load of ${url}`);
  }

  // The value of a JavaScript expression in the page (promises awaited).
  async eval(expression) {
    const r = await this.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`eval ${expression}: ${r.exceptionDetails.text} ${JSON.stringify(r.exceptionDetails.exception && r.exceptionDetails.exception.description)}`);
    return r.result.value;
  }

  // Wait for a condition (a function here, or an expression in the page).
  async until(cond, ms, what) {
    const t0 = Date.now();
    for (;;) {
      const v = typeof cond === 'function' ? cond() : await this.eval(cond);
      if (v) return Date.now() - t0;
      if (Date.now() - t0 > ms) throw new Error(`timed out (${ms} ms) waiting for ${what || cond}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  // A key pressed and let go; with text (e.g. '\r' for Enter) it also
  // types that character, as activating a focused button needs.
  async key(key, code, keyCode, text) {
    for (const type of [text ? 'keyDown' : 'rawKeyDown', 'keyUp'])
      await this.send('Input.dispatchKeyEvent', { type, key, code: code || key, windowsVirtualKeyCode: keyCode,
        ...(text && type === 'keyDown' ? { text } : {}) });
  }

  async screenshot(file) {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true });
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.from(data, 'base64'));
  }
}

// Chromium's executable: $CHROMIUM, else Debian's.
function chromiumPath() {
  for (const p of [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'])
    if (p && fs.existsSync(p)) return p;
  throw new Error('no chromium (./dev deps --test installs Debian\'s chromium)');
}

// For a driver of tests/test_console_browser.c: the test's answers read
// line by line from stdin (readLine() waits for the next), "ok STEP"
// printed, and a check that throws with its reason.
function driverIO() {
  const rl = require('readline').createInterface({ input: process.stdin });
  const waiting = [];
  rl.on('line', (l) => { const w = waiting.shift(); if (w) w(l); });
  return {
    readLine: () => new Promise((r) => waiting.push(r)),
    ok: (s) => console.log(`ok ${s}`),
    check: (cond, why) => { if (!cond) throw new Error(why); },
  };
}

module.exports = { Browser, chromiumPath, driverIO };
