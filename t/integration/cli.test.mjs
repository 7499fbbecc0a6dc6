// Command-line flags: -V, -h, bad flags, and config checking with -t.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  assertNoFatalOutput, freePort, makeCertificates, makeTempDir, request, startGateway, stopAll,
  runTollgate, writeTempFile,
} from './lib/harness.mjs';

/* A config that passes -t; the backend is never contacted. */
function validConfig(extra = {}) {
  return {
    listen: ['127.0.0.1:18080'],
    admin: '127.0.0.1:19090',
    workers: 1,
    backends: { primary: { url: 'http://127.0.0.1:19001' } },
    routes: [{ name: 'chat', match: { path: '/v1/chat/completions', model: 'gpt-*' }, backends: ['primary'] }],
    ...extra,
  };
}

function writeConfig(config) {
  return writeTempFile('tollgate.json', typeof config === 'string' ? config : JSON.stringify(config, null, 2));
}

async function check(config, env = {}) {
  const file = writeConfig(config);
  const result = await runTollgate(['-t', '-c', file], { env });
  return { file, ...result };
}

describe('command line', () => {
  after(stopAll);

  it('prints the version with -V', async () => {
    const { code, stdout, stderr } = await runTollgate(['-V']);
    assert.equal(code, 0);
    assert.equal((stdout + stderr).trim(), 'tollgate 0.1.0');
  });

  it('prints usage with -h', async () => {
    const { code, stdout, stderr } = await runTollgate(['-h']);
    assert.equal(code, 0);
    assert.match(stdout + stderr, /usage/i);
    assert.match(stdout + stderr, /-c FILE/);
    assert.match(stdout + stderr, /-t/);
  });

  it('takes the long forms of every option', async () => {
    const version = await runTollgate(['--version']);
    assert.equal(version.code, 0);
    assert.equal((version.stdout + version.stderr).trim(), 'tollgate 0.1.0');

    const help = await runTollgate(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /-V \| -h/);
    assert.match(help.stdout, /--config FILE/);

    const file = writeConfig(validConfig());
    const test = await runTollgate(['--test', '--config', file]);
    assert.equal(test.code, 0, test.stderr);
    assert.match(test.stderr, /configuration is valid$/m);
  });

  it('exits 2 with usage on an unknown flag', async () => {
    const { code, stderr } = await runTollgate(['-Z']);
    assert.equal(code, 2);
    assert.match(stderr, /usage/i);
  });

  it('accepts a valid config with -t', async () => {
    const { file, code, stderr } = await check(validConfig());
    assert.equal(code, 0, stderr);
    assert.match(stderr, new RegExp(`^${escape(file)}: configuration is valid$`, 'm'));
  });

  it('warns of a backend URL that ends in /v1', async () => {
    const { code, stderr } = await check(validConfig({
      backends: { primary: { url: 'http://127.0.0.1:19001/v1/' } },
    }));
    assert.equal(code, 0, stderr);
    assert.match(stderr, /backends\.primary\.url: warning: the URL "http:\/\/127\.0\.0\.1:19001\/v1\/" ends in \/v1,.* the upstream gets \/v1\/v1\//);
    assert.match(stderr, /configuration is valid$/m);

    const prefixed = await check(validConfig({
      backends: { primary: { url: 'http://127.0.0.1:19001/openai' } },
    }));
    assert.doesNotMatch(prefixed.stderr, /warning/);
  });

  it('warns of tls on http backends', async () => {
    const config = validConfig({
      listen: [`127.0.0.1:${await freePort()}`],
      admin: `127.0.0.1:${await freePort()}`,
      backends: { primary: { url: 'http://127.0.0.1:19001', tls: { verify: false } } },
    });
    const warning = /backends\.primary\.tls: warning: has no effect: backend "primary" has the http:\/\/ URL "http:\/\/127\.0\.0\.1:19001", so the gateway connects to it without TLS; write https:\/\/ for TLS, or remove tls$/m;
    const { code, stderr } = await check(config);
    assert.equal(code, 0, stderr);
    assert.match(stderr, warning);
    assert.match(stderr, /configuration is valid$/m);

    const gw = await startGateway(config);
    assert.ok(gw.stderr.some((line) => warning.test(line)), gw.stderr.join('\n'));
    const from = gw.stderr.length;
    assert.equal(await gw.reload(config), 'reloaded');
    assert.ok(gw.stderr.slice(from).some((line) => / \[warn\] /.test(line) && warning.test(line)),
      gw.stderr.join('\n'));
    await gw.stop();

    const secure = await check(validConfig({
      backends: { primary: { url: 'https://127.0.0.1:19001', tls: { verify: false } } },
    }));
    assert.doesNotMatch(secure.stderr, /warning/);
  });

  // 0 does not lift the limit: the gateway keeps each body in memory.
  it('rejects limits.max_body 0 and names the minimum', async () => {
    for (const value of [0, '0', '0KiB']) {
      const { file, code, stderr } = await check(validConfig({ limits: { max_body: value } }));
      assert.equal(code, 1, stderr);
      const shown = typeof value === 'string' ? `"${value}"` : `${value}`;
      assert.match(stderr, new RegExp(`^${file}: limits\\.max_body: ${shown} is below the minimum of 1B$`, 'm'));
    }
  });

  it('accepts every documented key with -t', async () => {
    const { code, stderr } = await check(validConfig({
      listen: ['127.0.0.1:18080', { address: '127.0.0.1:18443', tls: { cert: '/dev/null', key: '/dev/null' } }],
      drain_timeout: '30s',
      access_log: false,
      limits: {
        max_body: '32MiB', max_header: '64KiB', max_response_body: '64MiB',
        client_header_timeout: '10s', client_body_timeout: '30s', keepalive_timeout: '75s',
      },
      backends: {
        primary: {
          url: 'https://127.0.0.1:19001', api_key: '${TG_CLI_KEY}',
          timeouts: { connect: '2s', first_byte: '60s', idle: '30s' },
          tls: { verify: true },
          pool: { max_idle: 32, idle_timeout: '60s' },
        },
      },
    }), { TG_CLI_KEY: 'sk-cli' });
    // The TLS files are /dev/null, which a strict check may reject; any
    // error must then be about them and nothing else.
    if (code !== 0)
      for (const line of stderr.trim().split('\n'))
        assert.match(line, /listen\[1\]\.tls|cert|key/, `unexpected error: ${line}`);
  });

  it('names the file and key of an unknown backend', async () => {
    const config = validConfig();
    config.routes[0].backends = ['primray'];
    const { file, code, stderr } = await check(config);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`^${escape(file)}: routes\\[0\\]\\.backends\\[0\\]: unknown backend "primray"`, 'm'));
  });

  it('reports a JSON syntax error with line and column', async () => {
    const text = '{\n  "listen": ["127.0.0.1:18080"],\n  "admin": "127.0.0.1:19090" oops\n}\n';
    const { file, code, stderr } = await check(text);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`^${escape(file)}:3:\\d+: `, 'm'));
  });

  it('names a byte order mark at the start of the file', async () => {
    const { file, code, stderr } = await check(`\ufeff${JSON.stringify({ listen: ['127.0.0.1:18080'] })}`);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`^${escape(file)}:1:\\d+: the file starts with a UTF-8 byte order mark \\(bytes EF BB BF\\).*save the file without it$`, 'm'));
  });

  it('names the NUL escape in its own words, not jansson\'s flags', async () => {
    const { file, code, stderr } = await check('{"log_level": "in\\u0000fo"}');
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`^${escape(file)}:1:\\d+: a string has the escape \\\\u0000 \\(a NUL character\\), which no setting accepts; remove it$`, 'm'));
    assert.doesNotMatch(stderr, /JSON_ALLOW_NUL/);
  });

  it('reports every error in one run', async () => {
    const config = validConfig({ listne: ['127.0.0.1:1'] });
    config.drain_timeout = 'soon';
    config.routes[0].backends = ['primray'];
    const { file, code, stderr } = await check(config);
    assert.equal(code, 1);
    const lines = stderr.trim().split('\n').filter((l) => l.startsWith(file));
    assert.ok(lines.some((l) => l.includes('listne')), `no error for the unknown key in:\n${stderr}`);
    assert.ok(lines.some((l) => l.includes('drain_timeout')), `no error for drain_timeout in:\n${stderr}`);
    assert.ok(lines.some((l) => l.includes('primray')), `no error for the backend in:\n${stderr}`);
  });

  it('rejects a duplicate key', async () => {
    const text = '{\n  "listen": ["127.0.0.1:18080"],\n  "workers": 1,\n  "workers": 2,\n' +
      '  "backends": {"primary": {"url": "http://127.0.0.1:19001"}},\n' +
      '  "routes": [{"name": "chat", "match": {"path": "/v1/chat/completions"}, "backends": ["primary"]}]\n}\n';
    const { file, code, stderr } = await check(text);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`^${escape(file)}:`, 'm'));
    assert.match(stderr, /workers/);
  });

  const badValues = [
    ['a bad duration', (c) => { c.backends.primary.timeouts = { connect: 'soon' }; }, 'backends.primary.timeouts.connect'],
    ['a bad size', (c) => { c.limits = { max_body: 'huge' }; }, 'limits.max_body'],
    ['a bad URL scheme', (c) => { c.backends.primary.url = 'ftp://127.0.0.1:21'; }, 'backends.primary.url'],
    ['a bad workers count', (c) => { c.workers = 0; }, 'workers'],
    ['an unknown backend key', (c) => { c.backends.primary.retries = 3; }, 'backends.primary'],
    ['a listen address without a port', (c) => { c.listen = ['127.0.0.1']; }, 'listen[0]'],
  ];
  for (const [what, mutate, key] of badValues) {
    it(`names the key of ${what}`, async () => {
      const config = validConfig();
      mutate(config);
      const { file, code, stderr } = await check(config);
      assert.equal(code, 1, `exit code; stderr:\n${stderr}`);
      assert.ok(stderr.split('\n').some((l) => l.startsWith(`${file}: ${key}`)), `no line starting "${file}: ${key}" in:\n${stderr}`);
    });
  }

  it('rejects an unset ${VAR}', async () => {
    const config = validConfig();
    config.backends.primary.api_key = '${TG_CLI_UNSET_VARIABLE}';
    const { file, code, stderr } = await check(config);
    assert.equal(code, 1);
    assert.ok(stderr.split('\n').some((l) => l.startsWith(`${file}: backends.primary.api_key`) && l.includes('TG_CLI_UNSET_VARIABLE')),
      `no error naming the key and the variable in:\n${stderr}`);
  });

  it('never prints a secret', async () => {
    const secret = 'sk-cli-secret-5d1e';
    const config = validConfig({ drain_timeout: 'soon' });
    config.backends.primary.api_key = '${TG_CLI_SECRET}';
    const invalid = await check(config, { TG_CLI_SECRET: secret });
    assert.equal(invalid.code, 1, 'the bad drain_timeout was accepted');
    assert.ok(!(invalid.stdout + invalid.stderr).includes(secret), 'the api_key appears in the errors');

    delete config.drain_timeout;
    const valid = await check(config, { TG_CLI_SECRET: secret });
    assert.equal(valid.code, 0, valid.stderr);
    assert.ok(!(valid.stdout + valid.stderr).includes(secret), 'the api_key appears in the output');
  });

  for (const [what, accessLog, reason] of [
    ['a directory', () => makeTempDir(), /Is a directory/],
    ['a missing directory', () => '/nonexistent/tollgate-test/access.log', /No such file or directory/],
  ]) {
    it(`fails on an access_log path in ${what}`, async () => {
      const file = accessLog();
      const { code, stderr } = await check(validConfig({ access_log: file }));
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`access_log: cannot open "${escape(file)}"`));
      assert.match(stderr, reason);
      assert.doesNotMatch(stderr, /configuration is valid/);
    });
  }

  it('reports an access_log path beside other errors', async () => {
    const file = '/nonexistent/tollgate-test/access.log';
    const { code, stderr } = await check(validConfig({
      access_log: file,
      routes: [{ name: 'chat', backends: ['missing'] }],
    }));
    assert.equal(code, 1, stderr);
    assert.match(stderr, /routes\[0\]\.backends\[0\]: unknown backend "missing"/);
    assert.match(stderr, new RegExp(`access_log: cannot open "${escape(file)}"`));
  });

  it('names a missing config file', async () => {
    const file = '/nonexistent/tollgate-test/tollgate.json';
    const { code, stderr } = await runTollgate(['-t', '-c', file]);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(escape(file)));
  });

  for (const args of [['-t'], []]) {
    it(`tells how to pass a config when the default is missing${args.length ? ' with -t' : ''}`, async (t) => {
      const usage = await runTollgate(['-h']);
      const path = /\(default (\S+)\)/.exec(usage.stdout)[1];
      if (fs.existsSync(path)) {
        t.skip(`${path} exists on this machine`);
        return;
      }
      const { code, stderr } = await runTollgate(args);
      assert.equal(code, 1);
      assert.match(stderr, new RegExp(`^${escape(path)}: cannot open the default config file: No such file or directory; give one with -c FILE`, 'm'));
    });
  }

  for (const args of [['-t'], []]) {
    it(`names a directory as config path${args.length ? ' with -t' : ''}`, async () => {
      const dir = makeTempDir();
      const { code, stderr } = await runTollgate([...args, '-c', dir]);
      assert.equal(code, 1);
      assert.match(stderr, new RegExp(`^${escape(dir)}: cannot read: Is a directory; give -c the path of the JSON config file$`, 'm'));
      assert.doesNotMatch(stderr, /expected near/, 'a JSON syntax error was reported');
    });
  }

  // A key read from a secret file keeps the file's final newline, which
  // was sent as it was and ended the Authorization header early.
  it('rejects an api_key with a line break', async () => {
    const config = validConfig({ backends: { primary: { url: 'http://127.0.0.1:19001', api_key: '${TG_CLI_KEY}' } } });
    const trailing = await check(config, { TG_CLI_KEY: 'sk-cli-secret\n' });
    assert.equal(trailing.code, 1);
    assert.match(trailing.stderr, /backends\.primary\.api_key: the value from the environment ends with a line break/);
    assert.doesNotMatch(trailing.stderr, /sk-cli-secret/);

    const injected = await check(config, { TG_CLI_KEY: 'sk-cli-secret\r\nX-Injected: 1' });
    assert.equal(injected.code, 1);
    assert.match(injected.stderr, /api_key: the value from the environment contains a carriage return \(\\r\) at byte 14/);
    assert.doesNotMatch(injected.stderr, /sk-cli-secret|X-Injected/);
  });

  // -t took a host name for admin, as for listen, and startup then
  // refused it as "not a numeric host:port". /etc/hosts has localhost as
  // 127.0.0.1, where the harness looks for the admin listener.
  it('starts with the admin host name that -t accepts', async () => {
    const adminPort = await freePort();
    const config = validConfig({ listen: [`localhost:${await freePort()}`], admin: `localhost:${adminPort}` });
    const checked = await check(config);
    assert.equal(checked.code, 0, checked.stderr);

    const gw = await startGateway(config);
    const res = await request({ port: adminPort, path: '/healthz' });
    assert.equal(res.status, 200);
    assert.ok(gw.stderr.some((line) => line.includes(`admin listening on localhost:${adminPort}`)),
      gw.stderr.join('\n'));
  });

  it('exits 1 when started with an invalid config', async () => {
    const config = validConfig();
    config.routes[0].backends = ['primray'];
    const file = writeConfig(config);
    const { code, stderr } = await runTollgate(['-c', file]);
    assert.equal(code, 1);
    assert.match(stderr, /unknown backend "primray"/);
  });
});

/* tollgate -t loads every certificate, key and CA file with OpenSSL as the
 * start does, so that a file the start cannot use fails the check (which
 * the systemd unit runs before a start and a reload), not the next start
 * or every request to a backend. */
describe('TLS files under -t', () => {
  let certs;
  let other;
  let garbage;
  let empty;

  const listenTLS = (cert, key) => validConfig({
    listen: [{ address: '127.0.0.1:18443', tls: { cert, key } }],
  });

  before(() => {
    certs = makeCertificates(makeTempDir());
    other = makeCertificates(makeTempDir(), 'other test CA');
    garbage = writeTempFile('garbage.pem', 'not a PEM file\n');
    empty = writeTempFile('empty.pem', '');
  });

  after(stopAll);

  /* -t and a start both reject config with one line that names the key,
   * the file and OpenSSL's reason. */
  async function assertRejected(config, key, file, reason) {
    const { file: path, code, stderr } = await check(config);
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`^${escape(path)}: ${escape(key)}: .*"${escape(file)}".*: ` +
      `error:[0-9A-F]+:.*${reason}`, 'm'));
    assert.equal(stderr.trim().split('\n').length, 1, stderr);

    const started = await runTollgate(['-c', path]);
    assert.equal(started.code, 1, started.stderr);
    assert.match(started.stderr, new RegExp(`${escape(key)}: .*"${escape(file)}"`));
  }

  it('accepts a certificate with its key', async () => {
    const { code, stderr } = await check(listenTLS(certs.cert, certs.key));
    assert.equal(code, 0, stderr);
  });

  it('rejects a listener certificate that is not PEM', async () => {
    await assertRejected(listenTLS(garbage, certs.key), 'listen[0].tls.cert', garbage, 'no start line');
  });

  it('rejects an empty listener key', async () => {
    await assertRejected(listenTLS(certs.cert, empty), 'listen[0].tls.key', empty, '');
  });

  it('rejects a key that does not match the certificate', async () => {
    await assertRejected(listenTLS(certs.cert, other.key), 'listen[0].tls.key', other.key,
      'key values mismatch');
  });

  it('rejects certificate and key swapped', async () => {
    await assertRejected(listenTLS(certs.key, certs.cert), 'listen[0].tls.cert', certs.key,
      'no start line');
  });

  it('rejects a backend CA file without certificates', async () => {
    await assertRejected(validConfig({
      backends: { primary: { url: 'https://127.0.0.1:19001', tls: { ca_file: garbage } } },
    }), 'backends.primary.tls.ca_file', garbage, 'no certificate or crl found');
  });

  it('rejects a tracing CA file without certificates', async () => {
    await assertRejected(validConfig({
      tracing: { otlp: { endpoint: 'https://127.0.0.1:19318/v1/traces', tls: { ca_file: garbage } } },
    }), 'tracing.otlp.tls.ca_file', garbage, 'no certificate or crl found');
  });
});

/* Each start below passes -t, then fails at startup: it must exit 1 with
 * the reason, having stopped every thread it started and freed what it
 * held: under the sanitizer build (t/check-all), a leak report fails it. */
describe('failed start', () => {
  const servers = [];

  after(async () => {
    for (const server of servers)
      server.close();
    await stopAll();
  });

  /* A port that a server of this test holds. */
  async function takenPort() {
    const server = net.createServer();
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    return server.address().port;
  }

  async function start(config) {
    const file = writeConfig(config);
    const checked = await runTollgate(['-t', '-c', file]);
    assert.equal(checked.code, 0, checked.stderr);
    const result = await runTollgate(['-c', file]);
    assertNoFatalOutput(result.stderr);
    return result;
  }

  it('exits 1: listen port in use', async () => {
    const taken = await takenPort();
    const { code, stderr } = await start(validConfig({
      listen: [`127.0.0.1:${taken}`], admin: `127.0.0.1:${await freePort()}`,
    }));
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`\\[error\\] cannot listen on 127\\.0\\.0\\.1:${taken}: Address already in use`));
  });

  it('exits 1: second listen port in use', async () => {
    const taken = await takenPort();
    const { code, stderr } = await start(validConfig({
      workers: 2,
      listen: [`127.0.0.1:${await freePort()}`, `127.0.0.1:${taken}`],
      admin: `127.0.0.1:${await freePort()}`,
    }));
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken}: Address already in use`));
  });

  it('exits 1: admin port in use, tracing on', async () => {
    const taken = await takenPort();
    const { code, stderr } = await start(validConfig({
      listen: [`127.0.0.1:${await freePort()}`], admin: `127.0.0.1:${taken}`,
      tracing: { otlp: { endpoint: `http://127.0.0.1:${await freePort()}/v1/traces` } },
    }));
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`\\[error\\] cannot listen on admin address 127\\.0\\.0\\.1:${taken}: Address already in use`));
  });

  it('exits 1: access log directory gone', async () => {
    const dir = makeTempDir();
    const log = path.join(dir, 'access.log');
    const file = writeConfig(validConfig({
      listen: [`127.0.0.1:${await freePort()}`], admin: `127.0.0.1:${await freePort()}`,
      access_log: log,
    }));
    const checked = await runTollgate(['-t', '-c', file]);
    assert.equal(checked.code, 0, checked.stderr);
    fs.rmSync(dir, { recursive: true });
    const { code, stderr } = await runTollgate(['-c', file]);
    assertNoFatalOutput(stderr);
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`\\[error\\] cannot open access log ${escape(log)}: No such file or directory`));
  });
});

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
