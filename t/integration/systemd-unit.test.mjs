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

  after(stopAll);

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

    const [start] = directives(unit, 'ExecStart');
    const argv = start.split(' ');
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

    const chat = () => request({
      port, method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await waitFor(async () => (await chat()).status === 200, { message: 'a chat completion through the started unit' });

    // Reload: the new config drops the chat route, so a chat request gets 404.
    const config = JSON.parse(fs.readFileSync(path.join(confDir, 'tollgate.json'), 'utf8'));
    config.routes = config.routes.filter((r) => r.name !== 'chat');
    fs.writeFileSync(path.join(confDir, 'tollgate.json'), JSON.stringify(config));
    for (const line of directives(unit, 'ExecReload'))
      assert.equal((await execLine(line, child.pid)).code, 0, line);
    await waitFor(async () => (await chat()).status === 404, { message: 'the reloaded config' });

    // KillMode=mixed: SIGTERM to the main process, which drains and exits 0.
    assert.deepEqual(directives(unit, 'KillMode'), ['mixed']);
    child.kill('SIGTERM');
    assert.deepEqual(await exited, { code: 0, signal: null }, stderr);
  });
});
