// Request framing that two HTTP servers may read differently: chunk
// delimiters, line ends, header names and request targets. A proxy that
// reads such a request otherwise than the server in front of it lets a
// second request be smuggled past that server, so the gateway responds with
// 400, forwards nothing and closes the connection. Each case is sent as raw
// bytes, followed by a request that must never be read.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, basicConfig, rawPost, startGateway, startMock, stopAll,
} from './lib/harness.mjs';
import { assertError } from './lib/checks.mjs';

const chatText = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] });
const size = chatText.length.toString(16);

/* The start of a request head with this request id, without its end. */
function head(id, lines = []) {
  return 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
    `X-Request-Id: ${id}\r\nContent-Type: application/json\r\n` +
    lines.map((line) => `${line}\r\n`).join('');
}

/* A whole request with a chunked body built from the given chunk text. */
function chunked(id, body) {
  return `${head(id, ['Transfer-Encoding: chunked'])}\r\n${body}`;
}

const CONTENT_LENGTH = `Content-Length: ${chatText.length}`;
const CHUNK_FRAMING = /the chunked request body is malformed \(llhttp: /;
const BARE_LF_BODY = /the chunked request body ends with a bare LF/;
const BARE_LF_HEAD = /the request head ends with a bare LF/;
const BAD_FIELD = /a header field of the request is malformed \(llhttp: /;
const BAD_LINE_END = /a line of the request head does not end with CRLF \(llhttp: /;
const BAD_TARGET = /neither a path such as \/v1\/chat\/completions nor a valid http:\/\/ or https:\/\/ URL/;

/*
 * Requests rejected with 400: name, the bytes (id is the request id to put
 * in them) and the message expected. The comments describe what the loose
 * llhttp that tollgate used to be built with did with them.
 */
const REFUSED = [
  // Read as a whole body: the two bytes after a chunk went unchecked.
  ['chunk data followed by XX', (id) => chunked(id, `${size}\r\n${chatText}XX0\r\n\r\n`),
    /\(llhttp: Expected CRLF after chunk\)/],
  ['chunk data followed by CR and X', (id) => chunked(id, `${size}\r\n${chatText}\rX0\r\n\r\n`),
    /\(llhttp: Expected CRLF after chunk\)/],
  // Read as a whole body: the byte after the CR went unchecked.
  ['a chunk-size line ended by CR and X', (id) => chunked(id, `${size}\rX${chatText}\r\n0\r\n\r\n`),
    /\(llhttp: Expected LF after chunk size\)/],
  // Read as a whole body: a bare LF ended the trailer section.
  ['a last chunk ended by a bare LF', (id) => chunked(id, `${size}\r\n${chatText}\r\n0\r\n\n`),
    BARE_LF_BODY],
  ['a trailer section ended by a bare LF', (id) => chunked(id, `${size}\r\n${chatText}\r\n0\r\nX-Trailer: 1\r\n\n`),
    BARE_LF_BODY],
  // Rejected before, with a message that did not say why.
  ['a chunk-size line ended by a bare LF', (id) => chunked(id, `${size}\n${chatText}\r\n0\r\n\r\n`),
    CHUNK_FRAMING],
  ['a space after a chunk size', (id) => chunked(id, `${size} \r\n${chatText}\r\n0\r\n\r\n`),
    CHUNK_FRAMING],
  ['a bare LF inside a chunk extension', (id) => chunked(id, `${size};a\nb\r\n${chatText}\r\n0\r\n\r\n`),
    CHUNK_FRAMING],
  // Read as the end of the line.
  ['a request line ended by a bare LF', (id) => head(id).replace('HTTP/1.1\r\n', 'HTTP/1.1\n') +
    `${CONTENT_LENGTH}\r\n\r\n${chatText}`, /the request line ends with a bare LF/],
  ['a head ended by a bare LF', (id) => `${head(id, [CONTENT_LENGTH])}\n${chatText}`, BARE_LF_HEAD],
  ['a chunked head ended by a bare LF', (id) => `${head(id, ['Transfer-Encoding: chunked'])}\n` +
    `${size}\r\n${chatText}\r\n0\r\n\r\n`, BARE_LF_HEAD],
  // Read as the end of the head: the byte after the CR went unchecked.
  ['a head ended by CR and X', (id) => `${head(id, [CONTENT_LENGTH])}\rX${chatText}`,
    /\(llhttp: Expected LF after headers\)/],
  // Read as an empty value, and the next line as lost: Content-Length
  // went missing, and the body became the next request.
  ['a value that starts with CR and X', (id) => `${head(id, ['X-Note:\rZ', CONTENT_LENGTH])}\r\n${chatText}`,
    BAD_LINE_END],
  // Rejected before, with a message that did not say why.
  ['a space before the colon', (id) => `${head(id, ['X-Note : 1', CONTENT_LENGTH])}\r\n${chatText}`,
    BAD_FIELD],
  ['a space inside a name', (id) => `${head(id, ['X Note: 1', CONTENT_LENGTH])}\r\n${chatText}`,
    BAD_FIELD],
  ['a value folded onto a second line', (id) => `${head(id, ['X-Note: 1', ' 2', CONTENT_LENGTH])}\r\n${chatText}`,
    /a header value goes on over a second line \(obs-fold\)/],
  // Forwarded with the tab or the byte in the target.
  ['a tab in the request target', (id) => head(id).replace('/v1/chat/completions', '/v1/chat/\tcompletions') +
    `${CONTENT_LENGTH}\r\n\r\n${chatText}`, BAD_TARGET],
  ['a byte over 0x7F in the query', (id) => head(id).replace('/v1/chat/completions', '/v1/chat/completions?q=\xff') +
    `${CONTENT_LENGTH}\r\n\r\n${chatText}`, BAD_TARGET],
  // Rejected before, with a message that did not say why.
  ['a version that is not a number', (id) => head(id).replace('HTTP/1.1\r\n', 'HTTP/1.x\r\n') +
    `${CONTENT_LENGTH}\r\n\r\n${chatText}`, /the request is not valid HTTP\/1\.1 \(llhttp: Invalid minor version\)/],
  // Rejected before too: two framings, or one announced twice.
  ['Transfer-Encoding before Content-Length', (id) => `${head(id, ['Transfer-Encoding: chunked', CONTENT_LENGTH])}\r\n` +
    `${size}\r\n${chatText}\r\n0\r\n\r\n`, /both Content-Length and Transfer-Encoding/],
  ['the same Content-Length twice', (id) => `${head(id, [CONTENT_LENGTH, CONTENT_LENGTH])}\r\n${chatText}`,
    /Content-Length appears more than once/],
];

describe('request framing', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(basicConfig(mock));
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  for (const [name, bytes, message] of REFUSED) {
    it(`rejects ${name}`, async () => {
      const id = `framing-${name.replaceAll(/\W+/g, '-')}`;
      const client = await RawClient.connect(gw.port);
      try {
        // The request behind the rejected one must never be read.
        await client.write(Buffer.from(bytes(id) + rawPost('/v1/chat/completions', chatText,
          [`X-Request-Id: ${id}-follower`]), 'latin1'));
        const res = await client.readResponse();
        const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
        assert.match(error.message, message);
        assert.ok(await client.waitClosed(), 'the connection stayed open after the 400');
        assert.equal(client.buffer.length, 0, 'a second response followed the 400');
      } finally {
        client.destroy();
      }

      const entry = await gw.waitForAccess((e) => e.client.endsWith(`:${client.localPort}`));
      assert.equal(entry.status, 400);
      const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id']?.startsWith(id));
      assert.deepEqual(forwarded, [], 'the request or the one behind it reached the mock');
    });
  }

  /* Requests within the rules that the rejections above must not catch. */
  const ACCEPTED = [
    // Not ";a=b;c=d": llhttp 8.1 rejects a second extension after a
    // token value, whatever the build.
    ['chunk extensions', (id) => chunked(id, `${size};c="d e";a=b\r\n${chatText}\r\n0;f\r\n\r\n`)],
    ['a trailer section', (id) => chunked(id, `${size}\r\n${chatText}\r\n0\r\nX-Trailer: 1\r\n\r\n`)],
    ['several chunks', (id) => chunked(id, `a\r\n${chatText.slice(0, 10)}\r\n` +
      `${(chatText.length - 10).toString(16)}\r\n${chatText.slice(10)}\r\n0\r\n\r\n`)],
  ];
  for (const [name, bytes] of ACCEPTED) {
    it(`forwards a body with ${name}`, async () => {
      const id = `framing-ok-${name.replaceAll(/\W+/g, '-')}`;
      const client = await RawClient.connect(gw.port);
      try {
        await client.write(bytes(id));
        const res = await client.readResponse();
        assert.equal(res.status, 200, res.text);
      } finally {
        client.destroy();
      }
      const forwarded = (await mock.requests()).find((r) => r.headers['x-request-id'] === id);
      assert.ok(forwarded, 'the request did not reach the mock');
      assert.deepEqual(JSON.parse(forwarded.body), JSON.parse(chatText));
    });
  }

  it('forwards a request without a body whose head is split after a CR', async () => {
    // The CR ends one read and the LF starts the next: the check of the
    // last line looks back across reads.
    const client = await RawClient.connect(gw.port);
    try {
      // 50 ms apart, so that the gateway reads each piece on its own. A
      // shorter gap tests less but cannot fail the test.
      await client.write('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r');
      await new Promise((resolve) => setTimeout(resolve, 50));
      await client.write('\n');
      const res = await client.readResponse();
      assert.equal(res.status, 200, res.text);
    } finally {
      client.destroy();
    }
  });
});
