// make install and the config: an edited tollgate.json survives a new
// install and an uninstall; an unedited one goes with the uninstall. The
// test runs the config's own install rules (install-data-local and
// uninstall-local) of this build into a scratch DESTDIR. The mock's
// recordings go where an installed tollgate-mock looks for them.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';

import { MOCK_BIN, SRCDIR, TOLLGATE_BIN, makeTempDir } from './lib/harness.mjs';

const run = promisify(execFile);
const BUILD_DIR = path.dirname(TOLLGATE_BIN);

async function make(target, destdir) {
  const { stdout } = await run('make', ['-s', '-C', BUILD_DIR, target, `DESTDIR=${destdir}`,
    'sysconfdir=/etc/tollgate']);
  return stdout;
}

describe('make install and the config file', () => {
  const sample = fs.readFileSync(path.join(SRCDIR, 'conf', 'tollgate.json'), 'utf8');

  it('keeps an edited config and updates the sample beside it', async () => {
    const dest = makeTempDir();
    const config = path.join(dest, 'etc', 'tollgate', 'tollgate.json');

    await make('install-data-local', dest);
    assert.equal(fs.readFileSync(config, 'utf8'), sample);
    assert.equal(fs.readFileSync(`${config}.sample`, 'utf8'), sample);

    fs.writeFileSync(config, '{"edited": true}\n');
    const output = await make('install-data-local', dest);
    assert.equal(fs.readFileSync(config, 'utf8'), '{"edited": true}\n');
    assert.match(output, /keeping .*tollgate\.json; the new sample is tollgate\.json\.sample/);

    await make('uninstall-local', dest);
    assert.equal(fs.readFileSync(config, 'utf8'), '{"edited": true}\n');
    assert.equal(fs.existsSync(`${config}.sample`), false);
  });

  it('removes an unedited config on uninstall', async () => {
    const dest = makeTempDir();
    const config = path.join(dest, 'etc', 'tollgate', 'tollgate.json');

    await make('install-data-local', dest);
    await make('uninstall-local', dest);
    assert.equal(fs.existsSync(config), false);
    assert.equal(fs.existsSync(`${config}.sample`), false);
  });
});

describe('make install and the mock', () => {
  it('installs the recordings where the mock looks without its source tree', async () => {
    const { stdout: help } = await run(MOCK_BIN, ['--help']);
    const installed = /or (\S+) without it/.exec(help)?.[1];
    assert.ok(installed, `the help names no installed recordings:\n${help}`);
    const dest = makeTempDir();

    await make('install-dist_mockfixturesDATA', dest);
    const dir = path.join(dest, installed);
    for (const name of ['LICENSE', 'README.md', 'chat-basic.yaml', 'embeddings-basic.yaml'])
      assert.ok(fs.existsSync(path.join(dir, name)), `${name} is not installed in ${installed}`);
    assert.deepEqual(fs.readdirSync(dir).sort(),
      fs.readdirSync(path.join(SRCDIR, 't', 'fixtures', 'openai-recorded')).sort());
  });
});
