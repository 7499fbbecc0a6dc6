// The request line: its HTTP version, the single spaces between its parts
// and the empty lines a client may send before it (RFC 9112 sections 2.2
// and 3). Each case is sent as raw bytes, followed by a request that must
// never be read, since the gateway responds and closes.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, basicConfig, rawPost, request, startGateway, startMock, stopAll,
} from './lib/harness.mjs';
import { assertError } from './lib/checks.mjs';

const chatText = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] });

/* A chat request with this request line and request id. */
function post(line, id) {
  return `${line}\r\nHost: 127.0.0.1\r\nX-Request-Id: ${id}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${chatText.length}\r\n\r\n${chatText}`;
}

/* Send bytes and a request behind them; return the one response and
 * check that the gateway closed the connection after it. */
async function answerAndClose(gw, bytes, id) {
  const client = await RawClient.connect(gw.port);
  try {
    await client.write(Buffer.from(bytes + rawPost('/v1/chat/completions', chatText,
      [`X-Request-Id: ${id}-follower`]), 'latin1'));
    const res = await client.readResponse();
    assert.ok(await client.waitClosed(), 'the connection stayed open after the error');
    assert.equal(client.buffer.length, 0, 'a second response followed the error');
    return res;
  } finally {
    client.destroy();
  }
}

/* Requests refused with their status, error code and message. */
const REFUSED = [
  // Served as HTTP/0.9 before: llhttp read the header lines after it.
  ['a request line without a version', (id) => `GET /v1/models\r\nX-Request-Id: ${id}\r\n\r\n`,
    400, 'bad_request', /the request line ends after the target, without an HTTP version/],
  ['a POST line without a version', (id) => post('POST /v1/chat/completions', id),
    400, 'bad_request', /without an HTTP version/],
  // Served as HTTP/1.1 before.
  ['HTTP/2.0', (id) => post('POST /v1/chat/completions HTTP/2.0', id),
    505, 'http_version_not_supported', /gives HTTP\/2\.0, which the gateway does not serve; send the request as HTTP\/1\.1/],
  ['the HTTP/2 connection preface', () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    505, 'http_version_not_supported', /gives HTTP\/2\.0/],
  ['HTTP/0.9 named in the line', (id) => post('POST /v1/chat/completions HTTP/0.9', id),
    505, 'http_version_not_supported', /gives HTTP\/0\.9/],
  // Refused before with a 400 that did not name the version.
  ['HTTP/1.2', (id) => post('POST /v1/chat/completions HTTP/1.2', id),
    505, 'http_version_not_supported', /gives HTTP\/1\.2/],
  ['HTTP/3.0', (id) => post('POST /v1/chat/completions HTTP/3.0', id),
    505, 'http_version_not_supported', /gives HTTP\/3\.0/],
  // Served before: llhttp skipped the spaces, and a bare CR before the
  // line with the empty lines.
  ['two spaces after the method', (id) => post('POST  /v1/chat/completions HTTP/1.1', id),
    400, 'bad_request', /more than one space between its method and target/],
  ['two spaces before the version', (id) => post('POST /v1/chat/completions  HTTP/1.1', id),
    400, 'bad_request', /more than one space between its target and version/],
  ['a bare CR before the request line', (id) => `\r${post('POST /v1/chat/completions HTTP/1.1', id)}`,
    400, 'bad_request', /a CR before the request line is not followed by LF/],
  ['a CR and CRLF before the request line', (id) => `\r\r\n${post('POST /v1/chat/completions HTTP/1.1', id)}`,
    400, 'bad_request', /a CR before the request line is not followed by LF/],
];

/* The bytes of a request line cut into reads 50 ms apart, and the status
 * expected. The checks look back across reads: a shorter gap, or reads
 * that arrive together, test less but cannot fail the test. */
const SPLIT = [
  ['two spaces after the method', ['POST ', ' /v1/chat/completions HTTP/1.1'], 400],
  ['two spaces before the version', ['POST /v1/chat/completions ', ' HTTP/1.1'], 400],
  ['two spaces before a version cut off', ['POST /v1/chat/completions  HTTP/1', '.1'], 400],
  ['one space, cut off after it', ['POST /v1/chat/completions ', 'HTTP/1.1'], 200],
  ['a version cut off', ['POST /v1/chat/completions HTTP/', '1.1'], 200],
  ['CRLF cut between CR and LF', ['\r', '\nPOST /v1/chat/completions HTTP/1.1'], 200],
  ['a bare CR at the end of a read', ['\r', 'POST /v1/chat/completions HTTP/1.1'], 400],
  // The version's span ends after its last digit, with the read.
  ['a bare LF after a version that ends a read', ['POST /v1/chat/completions HTTP/1.1', '\nX-Note: 1'], 400],
  ['CRLF after a version that ends a read', ['POST /v1/chat/completions HTTP/1.1', '\r\nX-Note: 1'], 200],
  ['HTTP/2.0 cut after its version', ['POST /v1/chat/completions HTTP/2.0'], 505],
];

describe('request line', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(basicConfig(mock));
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  for (const [name, bytes, status, code, message] of REFUSED) {
    it(`answers ${status} to ${name}`, async () => {
      const id = `line-${name.replaceAll(/\W+/g, '-')}`;
      const res = await answerAndClose(gw, bytes(id), id);
      const error = assertError(res, status, 'invalid_request_error', code);
      assert.match(error.message, message);

      const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id']?.startsWith(id));
      assert.deepEqual(forwarded, [], 'the request or the one behind it reached the mock');
    });
  }

  // RFC 9112 section 2.2: a server ought to ignore at least one empty line
  // before the request line, and may take a bare LF as a line end.
  const EMPTY_LINES = [['one CRLF', '\r\n'], ['three CRLFs', '\r\n\r\n\r\n'], ['a bare LF', '\n']];
  for (const [name, lines] of EMPTY_LINES) {
    it(`serves a request after ${name}, on a new connection and behind another`, async () => {
      const id = `line-empty-${name.replaceAll(/\W+/g, '-')}`;
      const client = await RawClient.connect(gw.port);
      try {
        await client.write(lines + post('POST /v1/chat/completions HTTP/1.1', `${id}-1`) +
          lines + post('POST /v1/chat/completions HTTP/1.1', `${id}-2`));
        assert.equal((await client.readResponse()).status, 200);
        assert.equal((await client.readResponse()).status, 200);
      } finally {
        client.destroy();
      }
      const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id']?.startsWith(id));
      assert.equal(forwarded.length, 2);
    });
  }

  for (const [name, pieces, status] of SPLIT) {
    it(`answers ${status} to ${name} across reads`, async () => {
      const id = `line-split-${name.replaceAll(/\W+/g, '-')}`;
      const rest = post('', id);
      const client = await RawClient.connect(gw.port);
      try {
        // A piece the gateway refuses ends the reading: writes after it
        // may fail, and the response is there all the same.
        for (const piece of [...pieces, rest]) {
          await client.write(piece).catch(() => {});
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const res = await client.readResponse();
        assert.equal(res.status, status, res.text);
      } finally {
        client.destroy();
      }
    });
  }
});

// RFC 3986 allows these bytes in no path or query. An upstream that takes
// a backslash for "/" would serve /v1/..\admin as /admin, and the others
// are read differently from server to server, so none is forwarded.
describe('request target bytes', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: { mock: { url: mock.url } },
      routes: [{ name: 'v1', match: { path_prefix: '/v1/' }, backends: ['mock'] }],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  /* Targets, the byte named, its position and the advice. */
  const TARGETS = [
    ['/v1/..\\admin', '\\', 7, 'and which servers that take it for "/" would route otherwise; send the path without it'],
    ['/v1/models?x=\\', '\\', 14, 'and which servers that take it for "/" would route otherwise; send the path without it'],
    ['/v1/models?after="x"', '"', 18, '%22'],
    ['/v1/a<b>', '<', 6, '%3C'],
    ['/v1/a^b', '^', 6, '%5E'],
    ['/v1/a`b', '`', 6, '%60'],
    ['/v1/models?filter={}', '{', 19, '%7B'],
    ['/v1/a|b', '|', 6, '%7C'],
    ['/v1/a[0]', '[', 6, '%5B'],
  ];
  for (const [target, byte, position, advice] of TARGETS) {
    it(`answers 400 to ${target}, naming "${byte}" and its position`, async () => {
      const id = `target-byte-${position}-${byte.charCodeAt(0)}`;
      const res = await answerAndClose(gw, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        `X-Request-Id: ${id}\r\n\r\n`, id);
      const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
      const tail = advice.startsWith('%') ? `; send it percent-encoded, as ${advice}` : `, ${advice}`;
      assert.equal(error.message, `the request target "${target}" has "${byte}" at position ` +
        `${position}, which RFC 3986 allows in no path or query${tail}`);
      const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id']?.startsWith(id));
      assert.deepEqual(forwarded, [], 'the request or the one behind it reached the mock');
      const entry = await gw.accessFor(id);
      assert.equal(entry.termination, 'GR');
      assert.equal(entry.reason, 'bad_request_line');
    });
  }

  it('forwards such bytes percent-encoded, and the others RFC 3986 allows', async () => {
    for (const target of ['/v1/a%7Bb%7D', "/v1/a-b_c.d~e!$&'()*+,=:@/f?g=!$&'()*+,;=:@/?%5C%22",
      '/v1/a?include[]=x&b[c]=1']) {
      const id = `target-allowed-${target.length}`;
      const res = await request({ port: gw.port, method: 'GET', path: target, headers: { 'x-request-id': id } });
      assert.notEqual(res.status, 400, res.text);
      const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id'] === id);
      assert.equal(forwarded.length, 1, `${target} did not reach the mock`);
      const [path, query] = target.split(/\?(.*)/);
      assert.equal(forwarded[0].path, path);
      assert.equal(forwarded[0].query, query);
    }
  });
});
