// The request line: its HTTP version, the single spaces between its parts
// and the empty lines a client may send before it (RFC 9112 sections 2.2
// and 3). Each case is sent as raw bytes, followed by a request that must
// never be read, since the gateway answers and closes.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, basicConfig, rawPost, startGateway, startMock, stopAll,
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
});
