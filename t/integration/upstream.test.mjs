// Upstreams that misbehave in ways the mock cannot: invalid responses,
// connections closed before or inside a response, streams that end cleanly
// inside an event. Each is a small TCP server in this file that writes exact
// bytes and counts its connections.

import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { once } from 'node:events';
import net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';

import OpenAI from 'openai';

import {
  curl, curlPost, eventData, mockBackend, splitEvents, startGateway, startMock, stopAll,
} from './lib/harness.mjs';
import { assertError } from './lib/checks.mjs';
import { RawClient, rawRequest } from './lib/http.mjs';

const chat = (model) => ({ model, messages: [{ role: 'user', content: 'hello' }] });

/**
 * Start a loopback TCP server that calls respond(socket, requestText) once
 * a request head (and its Content-Length body) has arrived. Returns
 * {port, connections: number accepted, close()}.
 */
async function startScriptedUpstream(respond) {
  const state = { connections: 0 };
  const sockets = new Set();
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let text = '';
    socket.on('data', (bytes) => {
      text += bytes.toString('latin1');
      const headEnd = text.indexOf('\r\n\r\n');
      if (headEnd < 0)
        return;
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? 0);
      if (text.length < headEnd + 4 + length)
        return;
      const request = text;
      text = '';
      respond(socket, request);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = server.address().port;
  state.close = async () => {
    for (const socket of sockets)
      socket.destroy();
    server.close();
    await once(server, 'close');
  };
  return state;
}

/* Start a scripted upstream for each [name, script] of scripts into
 * upstreams, and a gateway with a route on path for each, matched by the
 * model name. Returns the gateway. */
async function startScriptedGateway(upstreams, scripts, path, options) {
  const backends = {};
  const routes = [];
  for (const [name, script] of scripts) {
    upstreams[name] = await startScriptedUpstream(script);
    backends[name] = { url: `http://127.0.0.1:${upstreams[name].port}` };
    routes.push({ name, match: { path, model: name }, backends: [name] });
  }
  return startGateway({ backends, routes }, options);
}

/* Stop the gateways and mocks, then the scripted upstreams, an object of
 * startScriptedUpstream() results. */
async function stopAllWith(upstreams) {
  try {
    await stopAll();
  } finally {
    await Promise.all(Object.values(upstreams).map((u) => u.close()));
  }
}

const SCRIPTS = {
  // Not HTTP at all.
  garbage: (socket) => socket.end('this is not an HTTP response\r\n\r\n'),
  // A well-formed response whose status has no class (RFC 9110 allows 100-599).
  status999: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    socket.write(`HTTP/1.1 999 Weird\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  },
  // An interim response before the real one.
  interim: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' +
      `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  },
  // An interim response that claims a body, which 1xx responses never have.
  interimBody: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    socket.write('HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\nhello' +
      `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  },
  // A body in a transfer coding the gateway cannot decode, delimited by the
  // connection closing.
  gzipCoded: (socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n' +
    'Transfer-Encoding: gzip\r\n\r\n{"object":"chat.completion","choices":[]}'),
  // A coding before chunked: the chunks decode, the gzip under them would not.
  gzipChunked: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n' +
      `Transfer-Encoding: gzip, chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
  },
  // Two bytes other than CRLF after a chunk's data: read as framing by a
  // loose parser, which would take the rest of the bytes as the next chunk.
  badChunkEnd: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n' +
      `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}XX0\r\n\r\n`);
  },
  // Lines ended by a bare LF, which RFC 9112 section 2.2 lets a recipient
  // of a head accept.
  bareLineFeeds: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    socket.write('HTTP/1.1 200 OK\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\n\n${body}`);
  },
  // A body compressed although the gateway asked for identity.
  gzipContent: (socket) => {
    const body = zlib.gzipSync('{"object":"chat.completion","choices":[]}');
    socket.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n' +
      `Content-Encoding: gzip\r\nContent-Length: ${body.length}\r\n\r\n`), body]));
  },
  // A stream whose every chunk carries "error": null, as some
  // OpenAI-compatible servers send.
  errorNullStream: (socket) => {
    const chunk = (delta, finish) => `data: ${JSON.stringify({
      id: 'chatcmpl-null', object: 'chat.completion.chunk', error: null,
      choices: [{ index: 0, delta, finish_reason: finish }],
    })}\n\n`;
    socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n' +
      chunk({ role: 'assistant', content: '' }, null) + chunk({ content: 'Hello' }, null) +
      chunk({}, 'stop') + 'data: [DONE]\n\n');
  },
  // A response without content.
  noContent: (socket) => socket.write('HTTP/1.1 204 No Content\r\n\r\n'),
  // Accept the request, then close without a byte.
  silent: (socket) => socket.destroy(),
  // A head announcing more body than ever comes.
  truncated: (socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id":"cut'),
  // A valid response with a hop-by-hop header and a custom one.
  headers: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n' +
      'Connection: keep-alive, X-Upstream-Hop\r\nX-Upstream-Hop: dropped\r\nKeep-Alive: timeout=5\r\n' +
      `X-Upstream-Custom: kept\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  },
  // A head written in pieces, cut inside a header name and inside a value.
  splitHead: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    const head = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n' +
      `X-Upstream-Split: first-half,second-half\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const pieces = [];
    let start = 0;
    for (const cut of [head.indexOf('Split:'), head.indexOf('half,second'), head.length]) {
      pieces.push(head.slice(start, cut));
      start = cut;
    }
    // 20 ms apart, so that the gateway reads each piece on its own. A
    // shorter gap tests less but cannot fail the test.
    pieces.forEach((piece, i) => setTimeout(() => socket.write(piece), 20 * i));
  },
  // Request ids of the upstream's own, twice, around other headers.
  upstreamIds: (socket) => {
    const body = '{"object":"chat.completion","choices":[]}';
    socket.write('HTTP/1.1 200 OK\r\nX-Request-Id: up-first\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\nx-request-id: up-second\r\nX-After: kept\r\n\r\n${body}`);
  },
};

describe('misbehaving upstreams', () => {
  const upstreams = {};
  let mock;
  let gw;
  let chatURL;

  before(async () => {
    mock = await startMock();
    const backends = { mock: mockBackend(mock) };
    const routes = [];
    for (const [name, script] of Object.entries(SCRIPTS)) {
      upstreams[name] = await startScriptedUpstream(script);
      backends[name] = { url: `http://127.0.0.1:${upstreams[name].port}` };
      routes.push({ name, match: { path: '/v1/chat/completions', model: name }, backends: [name] });
    }
    routes.push({ name: 'status999-then-mock', match: { path: '/v1/chat/completions', model: 'status999-then-mock' }, backends: ['status999', 'mock'] });
    routes.push({ name: 'gzipCoded-then-mock', match: { path: '/v1/chat/completions', model: 'gzipCoded-then-mock' }, backends: ['gzipCoded', 'mock'] });
    routes.push({ name: 'chat', match: { path: '/v1/chat/completions', model: 'gpt-*' }, backends: ['mock'] });
    gw = await startGateway({ limits: { max_response_body: '8KiB' }, backends, routes });
    chatURL = `${gw.baseURL}/v1/chat/completions`;
  });

  afterEach(() => gw?.checkErrors());
  after(() => stopAllWith(upstreams));

  it('answers 502 to an invalid response', async () => {
    gw.expectErrors(/invalid|malformed|parse|upstream/i);
    const res = await curl(curlPost(chatURL, chat('garbage')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.termination, 'SH');
  });

  it('answers 502 to a status outside 100-599', async () => {
    const res = await curl(curlPost(chatURL, chat('status999')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    assert.doesNotMatch(res.text, /chat\.completion/, 'the upstream body reached the client');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.termination, 'SH');
    await gw.waitForLog(/status 999 is outside 100-599/);
  });

  it('fails over from a status outside 100-599', async () => {
    const res = await curl(curlPost(chatURL, chat('status999-then-mock')));
    assert.equal(res.status, 200);
    assert.equal(res.json().object, 'chat.completion');
    assert.equal(res.headers['x-tollgate-attempts'], 'status999:reset,mock:200');
  });

  it('answers 502 to a transfer coding other than chunked', async () => {
    const res = await curl(curlPost(chatURL, chat('gzipCoded')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    assert.doesNotMatch(res.text, /chat\.completion/, 'the coded upstream body reached the client');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.termination, 'SH');
    assert.equal(entry.upstream_status, 200, 'the refused head\'s status is missing');
    await gw.waitForLog(/unsupported Transfer-Encoding "gzip"/);
  });

  it('answers 502 to a coding before chunked', async () => {
    const res = await curl(curlPost(chatURL, chat('gzipChunked')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    assert.doesNotMatch(res.text, /chat\.completion/, 'the coded upstream body reached the client');
    await gw.waitForLog(/unsupported Transfer-Encoding "gzip, chunked"/);
  });

  it('answers 502 to a chunk not followed by CRLF', async () => {
    gw.expectErrors(/Expected CRLF after chunk/);
    const res = await curl(curlPost(chatURL, chat('badChunkEnd')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    assert.doesNotMatch(res.text, /chat\.completion/, 'the upstream body reached the client');
    await gw.waitForLog(/HPE_STRICT: Expected CRLF after chunk/);
  });

  it('relays a response whose head has bare LF line ends', async () => {
    const res = await curl(curlPost(chatURL, chat('bareLineFeeds')));
    assert.equal(res.status, 200);
    assert.equal(res.json().object, 'chat.completion');
  });

  it('fails over from a transfer coding other than chunked', async () => {
    const res = await curl(curlPost(chatURL, chat('gzipCoded-then-mock')));
    assert.equal(res.status, 200);
    assert.equal(res.json().object, 'chat.completion');
    assert.equal(res.headers['x-tollgate-attempts'], 'gzipCoded:reset,mock:200');
  });

  it('answers 502 to a compressed body', async () => {
    // The gateway reads every reply (usage, filters, cache); relaying a
    // body it could not read would skip all of them.
    const res = await curl(curlPost(chatURL, chat('gzipContent')));
    const error = assertError(res, 502, 'upstream_error', 'upstream_failed');
    assert.doesNotMatch(res.text, /chat\.completion/);
    assert.equal(res.headers['content-encoding'], undefined);
    assert.match(error.message, /could not|invalid/);
    await gw.waitForLog(/Content-Encoding "gzip" although the gateway asked for identity/);
    // A head came, so the access log names its status: null would say
    // that none came.
    const line = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(line.upstream_status, 200);
    assert.equal(line.status, 502);
  });

  it('relays a stream whose chunks carry "error": null', async () => {
    const res = await curl(curlPost(chatURL, { ...chat('errorNullStream'), stream: true }));
    assert.equal(res.status, 200);
    assert.match(res.text, /"content":"Hello"/);
    assert.match(res.text, /data: \[DONE\]/);
  });

  it('relays response headers that arrive split across reads', async () => {
    const res = await curl(curlPost(chatURL, chat('splitHead')));
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-upstream-split'], 'first-half,second-half');
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.json().object, 'chat.completion');
  });

  it('skips an interim response', async () => {
    const res = await curl(curlPost(chatURL, chat('interim')));
    assert.equal(res.status, 200);
    assert.equal(res.json().object, 'chat.completion');
  });

  it('reads an interim response as having no body', async () => {
    gw.expectErrors(/invalid|malformed|parse|upstream/i);
    const res = await curl(curlPost(chatURL, chat('interimBody')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    const after = await curl(curlPost(chatURL, chat('gpt-4o')));
    assert.equal(after.status, 200, 'the gateway stopped serving after the interim body');
  });

  it('relays a 204 without Content-Length', async () => {
    const res = await curl(curlPost(chatURL, chat('noContent')));
    assert.equal(res.status, 204);
    assert.equal(res.headers['content-length'], undefined, 'a 204 carried Content-Length');
  });

  it('answers 502 without a retry when a fresh connection closes', async () => {
    gw.expectErrors(/closed|reset|upstream/i);
    const before = upstreams.silent.connections;
    const res = await curl(curlPost(chatURL, chat('silent')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    assert.equal(upstreams.silent.connections - before, 1, 'a request that failed on a new connection was retried');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.termination, 'SH');
  });

  it('answers 502 to a truncated body', async () => {
    gw.expectErrors(/closed|reset|upstream|incomplete|truncated/i);
    const res = await curl(curlPost(chatURL, chat('truncated')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    assert.doesNotMatch(res.text, /"id":"cut/, 'part of the upstream body reached the client');
  });

  it('answers 502 to a body over max_response_body', async () => {
    gw.expectErrors(/too large|max_response_body|upstream/i);
    const res = await curl(curlPost(chatURL, chat('gpt-4o'), ['x-mock: size=20000']));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
  });

  it('streams past max_response_body', async () => {
    const res = await curl(curlPost(chatURL, { ...chat('gpt-4o'), stream: true }, ['x-mock: size=20000']));
    assert.equal(res.status, 200);
    assert.ok(res.body.length > 8192, `only ${res.body.length} bytes`);
    assert.match(res.text, /data: \[DONE\]/);
  });

  it('removes hop-by-hop response headers', async () => {
    const res = await curl(curlPost(chatURL, chat('headers')));
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-upstream-custom'], 'kept');
    assert.equal(res.headers['x-upstream-hop'], undefined, 'a header listed in Connection was relayed');
    assert.equal(res.headers['keep-alive'], undefined, 'Keep-Alive was relayed');
    assert.equal(res.json().object, 'chat.completion');
  });

  it('renames the upstream request id', async () => {
    const res = await curl(curlPost(chatURL, chat('upstreamIds')));
    assert.equal(res.status, 200);
    const named = (name) => res.headerList.filter(([n]) => n === name).map(([, v]) => v);
    assert.deepEqual(named('x-upstream-request-id'), ['up-first']);
    assert.equal(named('x-request-id').length, 1);
    assert.match(named('x-request-id')[0], /^[0-9a-f]{32}$/);
    assert.deepEqual(named('content-length'), ['41']);
    assert.deepEqual(named('x-after'), ['kept']);
    assert.deepEqual(res.headerList.map(([n]) => n).slice(0, 2), ['content-type', 'x-after']);
    assert.equal(res.json().object, 'chat.completion');
  });
});

describe('an upstream that answers before reading the body', () => {
  let upstream;
  let gw;

  before(async () => {
    // Responds as soon as a request head arrives, with keep-alive, and
    // stops reading that connection: the rest of a large body stays
    // unsent in the gateway.
    upstream = { connections: 0, sockets: new Set() };
    upstream.server = net.createServer((socket) => {
      upstream.connections++;
      upstream.sockets.add(socket);
      socket.on('error', () => {});
      let head = '';
      const onData = (bytes) => {
        head += bytes.toString('latin1');
        if (head.indexOf('\r\n\r\n') < 0)
          return;
        socket.pause();
        socket.off('data', onData);
        const body = '{"object":"chat.completion","choices":[]}';
        socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      };
      socket.on('data', onData);
    });
    upstream.server.listen(0, '127.0.0.1');
    await once(upstream.server, 'listening');
    gw = await startGateway({
      limits: { max_body: '48MiB' },
      backends: { early: { url: `http://127.0.0.1:${upstream.server.address().port}`, timeouts: { first_byte: '3s' } } },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['early'] }],
    });
  });

  after(async () => {
    try {
      await stopAll();
    } finally {
      for (const socket of upstream.sockets)
        socket.destroy();
      upstream.server.close();
    }
  });

  it('does not reuse a connection with part of the request unsent', async () => {
    // Larger than the socket buffers of both ends together, so part of
    // the body is still queued when the response is complete.
    const big = JSON.stringify({ ...chat('gpt-4o'), messages: [{ role: 'user', content: 'x'.repeat(32 * 1024 * 1024) }] });
    const url = `${gw.baseURL}/v1/chat/completions`;
    const first = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
    assert.equal(first.status, 200);
    await first.text();

    const second = await curl(curlPost(url, chat('gpt-4o')));
    assert.equal(second.status, 200, `the next request got ${second.status}: ${second.text.slice(0, 200)}`);
    assert.equal(upstream.connections, 2, 'the next request went behind the unsent body');
  });
});

/* A whole content event, and the start of the next one, which the stream
 * never finishes. */
const WHOLE_EVENT = `data: ${JSON.stringify({
  id: 'chatcmpl-cut', object: 'chat.completion.chunk', model: 'cut',
  choices: [{ index: 0, delta: { content: 'ok' }, finish_reason: null }],
})}\n\n`;
const CUT_LINE = 'data: {"id":"chatcmpl-cut","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lost';
const STREAM_HEAD = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n';

const chunk = (text) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;

/* Streams that end cleanly for HTTP while their last event still waits for
 * the blank line that would complete it: backend name and script. */
const UNFINISHED_STREAMS = [
  // A chunked body that ends inside a line.
  ['chunked-cut-line', (socket) => socket.end(
    `${STREAM_HEAD}Transfer-Encoding: chunked\r\n\r\n${chunk(WHOLE_EVENT)}${chunk(CUT_LINE)}0\r\n\r\n`)],
  // A chunked body that ends after the first line of an event.
  ['chunked-one-line', (socket) => socket.end(
    `${STREAM_HEAD}Transfer-Encoding: chunked\r\n\r\n${chunk(WHOLE_EVENT)}${chunk(`${CUT_LINE}"}}]}\n`)}0\r\n\r\n`)],
  // A body delimited by the connection, closed inside a line.
  ['close-cut-line', (socket) => socket.end(
    `${STREAM_HEAD}Connection: close\r\n\r\n${WHOLE_EVENT}${CUT_LINE}`)],
];

describe('a stream that ends inside an event', () => {
  const upstreams = {};
  let gw;
  let client;

  before(async () => {
    gw = await startScriptedGateway(upstreams, UNFINISHED_STREAMS, '/v1/chat/completions');
    client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'unused', maxRetries: 0 });
  });

  afterEach(() => gw?.checkErrors());
  after(() => stopAllWith(upstreams));

  for (const [name] of UNFINISHED_STREAMS) {
    it(`drops the cut event (${name})`, async () => {
      const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, { ...chat(name), stream: true }));
      assert.equal(res.status, 200);
      const { events, rest } = splitEvents(res.text);
      assert.equal(rest, '', `the body ends inside an event: ${res.text}`);
      assert.equal(events.length, 2, `events: ${events.join(' | ')}`);
      assert.equal(`${events[0]}\n\n`, WHOLE_EVENT);
      assert.equal(events[1].split('\n').length, 1, `the error event has more than one line: ${events[1]}`);
      const { error } = JSON.parse(eventData(events[1]));
      assert.equal(error.type, 'upstream_error');
      assert.equal(error.code, 'upstream_incomplete');
    });

    it(`raises an openai APIError (${name})`, async () => {
      const contents = [];
      const stream = await client.chat.completions.create({ ...chat(name), stream: true });
      await assert.rejects(async () => {
        for await (const part of stream)
          contents.push(part.choices[0].delta.content);
      }, (err) => {
        assert.ok(err instanceof OpenAI.APIError, `${err.constructor.name}: ${err.message}`);
        assert.equal(err.code, 'upstream_incomplete');
        return true;
      });
      assert.deepEqual(contents, ['ok']);
    });
  }
});

/* The first events of a Responses API stream, numbered from 0, which
 * never reaches response.completed. */
const responsesEvent = (data, n) => `event: ${data.type}\ndata: ${JSON.stringify({ ...data, sequence_number: n })}\n\n`;
const RESPONSES_START = [
  { type: 'response.created', response: { id: 'resp_cut', object: 'response', status: 'in_progress', output: [] } },
  { type: 'response.output_item.added', output_index: 0, item: { id: 'msg_1', type: 'message', role: 'assistant', content: [] } },
  { type: 'response.content_part.added', item_id: 'msg_1', output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } },
  { type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'ok' },
].map(responsesEvent).join('');

/* Responses API streams that the gateway must end itself: backend name,
 * script, and the error code the client gets. */
const CUT_RESPONSES_STREAMS = [
  // The body ends cleanly with no response.completed.
  ['responses-unfinished', (socket) => socket.end(
    `${STREAM_HEAD}Transfer-Encoding: chunked\r\n\r\n${chunk(RESPONSES_START)}0\r\n\r\n`), 'upstream_incomplete'],
  // The connection closes inside the chunked body.
  ['responses-reset', (socket) => socket.end(
    `${STREAM_HEAD}Transfer-Encoding: chunked\r\n\r\n${chunk(RESPONSES_START)}`), 'upstream_failed'],
];

describe('a Responses API stream that the gateway ends', () => {
  const upstreams = {};
  let gw;
  let client;

  before(async () => {
    gw = await startScriptedGateway(upstreams, CUT_RESPONSES_STREAMS, '/v1/responses',
      { expectErrors: [/closed the connection/] });
    client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'unused', maxRetries: 0 });
  });

  afterEach(() => gw?.checkErrors());
  after(() => stopAllWith(upstreams));

  for (const [name, , code] of CUT_RESPONSES_STREAMS) {
    it(`ends with the API's error event, numbered next (${name})`, async () => {
      const res = await curl(curlPost(`${gw.baseURL}/v1/responses`, { model: name, input: 'hello', stream: true }));
      assert.equal(res.status, 200);
      const { events, rest } = splitEvents(res.text);
      assert.equal(rest, '', `the body ends inside an event: ${res.text}`);
      assert.equal(events.length, 5, `events: ${events.join(' | ')}`);
      const error = events[4];
      assert.match(error, /^event: error\n/);
      const data = JSON.parse(eventData(error));
      assert.deepEqual(Object.keys(data).sort(), ['code', 'message', 'param', 'sequence_number', 'type']);
      assert.equal(data.type, 'error');
      assert.equal(data.code, code);
      assert.equal(data.param, null);
      assert.equal(data.sequence_number, 4);
    });

    // openai-node (6.49) yields the API's error event as an event, and its
    // final response rejects with that event, as for OpenAI's own: it
    // raises no APIError for this shape.
    it(`gives the openai client the error event (${name})`, async () => {
      const stream = client.responses.stream({ model: name, input: 'hello' });
      const events = [];
      for await (const e of stream)
        events.push(e);
      assert.deepEqual(events.map((e) => e.type), [
        'response.created', 'response.output_item.added', 'response.content_part.added',
        'response.output_text.delta', 'error',
      ]);
      assert.equal(events[4].code, code);
      await assert.rejects(stream.finalResponse(), (err) => {
        assert.equal(err.code, code);
        assert.equal(err.sequence_number, 4);
        return true;
      });
    });
  }
});

describe('responses without a body', () => {
  // Each status has no body by definition, whatever framing headers it
  // carries (RFC 9110 sections 15.3.5 and 15.4.5). The upstream keeps the
  // connection open after the head, as a correct server does.
  const upstreams = {};
  let gw;

  before(async () => {
    const backends = {};
    const routes = [];
    for (const status of [204, 304]) {
      const head = `HTTP/1.1 ${status} X\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`;
      upstreams[status] = await startScriptedUpstream((socket) => socket.write(head));
      backends[`s${status}`] = { url: `http://127.0.0.1:${upstreams[status].port}`, timeouts: { idle: '1s' } };
      routes.push({ name: `s${status}`, match: { model: `s${status}` }, backends: [`s${status}`], retry: { max_attempts: 1 } });
    }
    gw = await startGateway({ backends, routes });
  });

  afterEach(() => gw?.checkErrors());
  after(() => stopAllWith(upstreams));

  for (const status of [204, 304]) {
    it(`relays a ${status} that has Content-Length`, async () => {
      const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, chat(`s${status}`)));
      assert.equal(res.status, status);
      assert.equal(res.body.length, 0);
    });
  }
});

describe('responses to HEAD', () => {
  // A HEAD response has framing headers but no body (RFC 9110 section
  // 9.3.2). Each response below is the head alone, on a connection the
  // upstream keeps open, as a correct server does.
  const HEADS = {
    'content-length': 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n',
    chunked: 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    'event-stream': 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n',
  };
  const upstreams = {};
  let gw;

  before(async () => {
    const backends = {};
    const routes = [];
    for (const [name, head] of Object.entries(HEADS)) {
      upstreams[name] = await startScriptedUpstream((socket) => socket.write(head));
      backends[name] = { url: `http://127.0.0.1:${upstreams[name].port}`, timeouts: { idle: '1s' } };
      routes.push({ name, match: { path: `/v1/files/${name}` }, backends: [name], retry: { max_attempts: 1 } });
    }
    routes.push({ name: 'rest', backends: ['chunked'] });
    gw = await startGateway({ backends, routes });
  });

  afterEach(() => gw?.checkErrors());
  after(() => stopAllWith(upstreams));

  /* Send HEAD path and a GET after it on one connection. Returns the head
   * of the HEAD response and the whole response to the GET, which starts
   * where the head ended only when no body followed that head. */
  async function headThenGet(path) {
    const client = await RawClient.connect(gw.port);
    await client.write(rawRequest('HEAD', path, ['Host: 127.0.0.1']));
    await client.write(rawRequest('GET', '/v1/models', ['Host: 127.0.0.1', 'Connection: close']));
    const head = await client.readResponse({ head: true });
    return { head, next: await client.readResponse() };
  }

  for (const name of Object.keys(HEADS)) {
    it(`relays only the head of the ${name} response`, async () => {
      const { head, next } = await headThenGet(`/v1/files/${name}`);
      assert.equal(head.status, 200);
      assert.equal(head.header('transfer-encoding'), undefined);
      assert.equal(next.status, 200);
      assert.equal(next.json().object, 'list');
    });
  }

  it('sends no body with its own error to HEAD', async () => {
    const { head, next } = await headThenGet('/v1/chat/completions');
    assert.equal(head.status, 405);
    assert.notEqual(head.header('content-length'), undefined);
    assert.equal(next.status, 200);
  });
});
