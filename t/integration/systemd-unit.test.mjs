// The systemd unit (conf/tollgate.service.in): systemd reads it without a
// complaint, and its commands start, check, reload and stop the gateway
// as systemd would run them. systemd is not PID 1 in the tests, so the
// commands run from here, with the unit's paths pointing at this build.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

import {
  SRCDIR, TOLLGATE_BIN, basicConfig, freePort, makeTempDir, request, startMock, stopAll, waitFor,
} from './lib/harness.mjs';

const run = promisify(execFile);

/* Processes spawned here rather than by the harness, killed at the end
 * even when a test fails half way. */
const spawned = [];
const TEMPLATE = path.join(SRCDIR, 'conf', 'tollgate.service.in');

/* Return the unit text as make writes it, for a bindir and a sysconfdir. */
function unitFor(bindir, sysconfdir) {
  return fs.readFileSync(TEMPLATE, 'utf8')
    .replaceAll('@bindir@', bindir)
    .replaceAll('@sysconfdir@', sysconfdir);
}

/* Return the values of a directive of the unit, in order. */
function directives(unit, name) {
  return unit.split('\n')
    .filter((line) => line.startsWith(`${name}=`))
    .map((line) => line.slice(name.length + 1));
}

/* A stand-in for systemd's notify socket: python3 receives the datagrams
 * (node has no AF_UNIX datagram sockets) and prints each as a JSON line.
 * Returns the socket path and a function that waits for the next notice. */
async function notifySocket() {
  const file = path.join(makeTempDir(), 'notify.sock');
  const script = [
    'import json, socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(sys.argv[1])',
    'print("bound", flush=True)',
    'while True: print(json.dumps(s.recv(4096).decode()), flush=True)',
  ].join('\n');
  const child = spawn('python3', ['-c', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  spawned.push(child);
  const lines = [];
  let waiting = null;
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text) => {
    pending += text;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      lines.push(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
    if (waiting && lines.length > 0)
      waiting();
  });
  const next = async () => {
    const deadline = Date.now() + 10000;
    while (lines.length === 0) {
      if (Date.now() >= deadline)
        throw new Error('no notice from tollgate on its NOTIFY_SOCKET in 10 s');
      await new Promise((resolve) => {
        waiting = resolve;
        setTimeout(resolve, 100);
      });
    }
    return lines.shift();
  };
  assert.equal(await next(), 'bound');
  return { file, next: async () => JSON.parse(await next()), stop: () => child.kill() };
}

/* Run one Exec line: systemd splits it on spaces here (no quoting in the
 * unit) and substitutes $MAINPID. */
async function execLine(line, mainPid = null) {
  const argv = line.replaceAll('$MAINPID', String(mainPid)).split(' ');
  try {
    const { stdout, stderr } = await run(argv[0], argv.slice(1));
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    return { code: err.code, output: (err.stdout || '') + (err.stderr || '') };
  }
}

describe('systemd unit', () => {
  let mock;
  let confDir;
  let unit;
  let port;

  before(async () => {
    mock = await startMock();
    confDir = makeTempDir();
    port = await freePort();
    const config = basicConfig(mock, {
      listen: [`127.0.0.1:${port}`],
      admin: `127.0.0.1:${await freePort()}`,
      workers: 1,
      drain_timeout: '5s',
      access_log: false,
    });
    fs.writeFileSync(path.join(confDir, 'tollgate.json'), JSON.stringify(config));
    unit = unitFor(path.dirname(TOLLGATE_BIN), confDir);
  });

  after(async () => {
    for (const child of spawned)
      child.kill('SIGKILL');
    await stopAll();
  });

  it('passes systemd-analyze verify without a warning', async () => {
    const file = path.join(makeTempDir(), 'tollgate.service');
    fs.writeFileSync(file, unit);
    const { stdout, stderr } = await run('systemd-analyze', ['verify', '--man=no', file]);
    assert.equal(stdout + stderr, '');
  });

  it('is written by make with no placeholder left', () => {
    const built = path.join(path.dirname(TOLLGATE_BIN), 'conf', 'tollgate.service');
    const text = fs.readFileSync(built, 'utf8');
    assert.doesNotMatch(text, /@[a-z]+@/);
    assert.match(text, /^ExecStart=\/\S+\/tollgate -c \/\S+\/tollgate\.json$/m);
  });

  it('fails its start check on an invalid config', async () => {
    const badDir = makeTempDir();
    fs.writeFileSync(path.join(badDir, 'tollgate.json'), '{"listen": 8080}');
    const [pre] = directives(unitFor(path.dirname(TOLLGATE_BIN), badDir), 'ExecStartPre');
    const { code, output } = await execLine(pre);
    assert.notEqual(code, 0);
    assert.match(output, /listen/);
  });

  it('starts, reloads and drains as its commands run it', async () => {
    const [pre] = directives(unit, 'ExecStartPre');
    assert.equal((await execLine(pre)).code, 0);

    // Type=notify: the service counts as started at READY=1, so a request
    // right after it must be served, without a retry.
    assert.deepEqual(directives(unit, 'Type'), ['notify']);
    const manager = await notifySocket();
    const [start] = directives(unit, 'ExecStart');
    const argv = start.split(' ');
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: manager.file },
    });
    spawned.push(child);
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

    const chat = () => request({
      port, method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(await manager.next(), 'READY=1\nSTATUS=serving');
    assert.equal((await chat()).status, 200);

    // Reload: the new config drops the chat route, so a chat request gets
    // 404 once the manager has heard READY=1 again.
    const config = JSON.parse(fs.readFileSync(path.join(confDir, 'tollgate.json'), 'utf8'));
    config.routes = config.routes.filter((r) => r.name !== 'chat');
    fs.writeFileSync(path.join(confDir, 'tollgate.json'), JSON.stringify(config));
    for (const line of directives(unit, 'ExecReload'))
      assert.equal((await execLine(line, child.pid)).code, 0, line);
    assert.equal(await manager.next(), 'RELOADING=1');
    assert.equal(await manager.next(), 'READY=1\nSTATUS=serving');
    await waitFor(async () => (await chat()).status === 404, { message: 'the reloaded config' });

    // KillMode=mixed: SIGTERM to the main process, which drains and exits 0.
    assert.deepEqual(directives(unit, 'KillMode'), ['mixed']);
    child.kill('SIGTERM');
    assert.equal(await manager.next(), 'STOPPING=1');
    assert.deepEqual(await exited, { code: 0, signal: null }, stderr);
    manager.stop();
  });
});
