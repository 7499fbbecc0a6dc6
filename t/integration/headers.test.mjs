// Request headers on their way upstream: credentials, request ids,
// X-Forwarded-*, hop-by-hop removal, Host, and header values the gateway
// must reject.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, curl, curlPost, freePort, stopAll, mockBackend, rawPost, rawRequest,
  startGateway, startMock,
} from './lib/harness.mjs';
import { assertError } from './lib/checks.mjs';

const SECRET = 'sk-integration-secret-7f3a9c';
const chat = (model) => ({ model, messages: [{ role: 'user', content: 'hello' }] });

describe('upstream request headers', () => {
  let mock;
  let gw;
  let chatURL;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: {
        keyed: mockBackend(mock, { api_key: '${TG_TEST_API_KEY}' }),
        open: mockBackend(mock),
      },
      routes: [
        { name: 'keyed', match: { path: '/v1/chat/completions', model: 'keyed-*' }, backends: ['keyed'] },
        { name: 'open', match: { path: '/v1/chat/completions', model: '*' }, backends: ['open'] },
      ],
    }, { env: { TG_TEST_API_KEY: SECRET } });
    chatURL = `${gw.baseURL}/v1/chat/completions`;
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('replaces Authorization with the backend api_key', async () => {
    const res = await curl(curlPost(chatURL, chat('keyed-model'), ['Authorization: Bearer client-token']));
    assert.equal(res.status, 200);
    const seen = await mock.lastRequest();
    assert.equal(seen.headers.authorization, `Bearer ${SECRET}`);
  });

  it('adds Authorization from api_key when the client sent none', async () => {
    const res = await curl(curlPost(chatURL, chat('keyed-model')));
    assert.equal(res.status, 200);
    const seen = await mock.lastRequest();
    assert.equal(seen.headers.authorization, `Bearer ${SECRET}`);
  });

  it('never prints the api_key', () => {
    const output = [...gw.stderr, ...gw.stdout].join('\n');
    assert.ok(!output.includes(SECRET), 'the secret appears in the gateway output');
  });

  it('passes the client Authorization without api_key', async () => {
    const res = await curl(curlPost(chatURL, chat('gpt-4o'), ['Authorization: Bearer client-token']));
    assert.equal(res.status, 200);
    const seen = await mock.lastRequest();
    assert.equal(seen.headers.authorization, 'Bearer client-token');
  });

  it('generates X-Request-Id when absent', async () => {
    const first = await curl(curlPost(chatURL, chat('gpt-4o')));
    const firstSeen = await mock.lastRequest();
    const second = await curl(curlPost(chatURL, chat('gpt-4o')));

    assert.match(first.headers['x-request-id'] ?? '', /^[0-9a-f]{32}$/);
    assert.match(second.headers['x-request-id'] ?? '', /^[0-9a-f]{32}$/);
    assert.notEqual(first.headers['x-request-id'], second.headers['x-request-id']);
    assert.equal(firstSeen.headers['x-request-id'], first.headers['x-request-id'], 'id sent upstream');
    const entry = await gw.accessFor(first.headers['x-request-id']);
    assert.equal(entry.status, 200);
  });

  it('keeps a valid client X-Request-Id', async () => {
    const id = 'client-req-42.abc_DEF';
    const res = await curl(curlPost(chatURL, chat('gpt-4o'), [`X-Request-Id: ${id}`]));
    assert.equal(res.headers['x-request-id'], id);
    const seen = await mock.lastRequest();
    assert.equal(seen.headers['x-request-id'], id);
  });

  it('replaces an X-Request-Id over 128 characters', async () => {
    const id = 'r'.repeat(129);
    const res = await curl(curlPost(chatURL, chat('gpt-4o'), [`X-Request-Id: ${id}`]));
    assert.match(res.headers['x-request-id'] ?? '', /^[0-9a-f]{32}$/);
    const seen = await mock.lastRequest();
    assert.equal(seen.headers['x-request-id'], res.headers['x-request-id']);
  });

  it('keeps a 128-character X-Request-Id', async () => {
    const id = 'q'.repeat(128);
    const res = await curl(curlPost(chatURL, chat('gpt-4o'), [`X-Request-Id: ${id}`]));
    assert.equal(res.headers['x-request-id'], id);
  });

  const badIds = {
    'an empty X-Request-Id': 'X-Request-Id:',
    'an X-Request-Id with a tab': 'X-Request-Id: left\tright',
    'an X-Request-Id with a non-ASCII byte': 'X-Request-Id: caf\u00e9',
  };
  for (const [what, line] of Object.entries(badIds)) {
    it(`replaces ${what}`, async () => {
      const client = await RawClient.connect(gw.port);
      let res;
      try {
        await client.write(Buffer.from(rawPost('/v1/chat/completions', chat('gpt-4o'), [line]), 'latin1'));
        res = await client.readResponse();
      } finally {
        client.destroy();
      }
      assert.equal(res.status, 200);
      assert.match(res.header('x-request-id') ?? '', /^[0-9a-f]{32}$/);
      const seen = await mock.lastRequest();
      assert.equal(seen.headers['x-request-id'], res.header('x-request-id'));
    });
  }

  it('sets X-Forwarded-For, X-Forwarded-Proto and Forwarded', async () => {
    await curl(curlPost(chatURL, chat('gpt-4o')));
    const seen = await mock.lastRequest();
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers.forwarded, 'for=127.0.0.1;proto=http');
  });

  it('appends an element for this hop to every client Forwarded', async () => {
    // Before, the client's Forwarded passed unchanged and named no hop of
    // the gateway, unlike X-Forwarded-For beside it.
    await curl(curlPost(chatURL, chat('gpt-4o'), [
      'Forwarded: for=203.0.113.7;proto=https', 'Forwarded: for="[2001:db8::1]"',
    ]));
    const seen = await mock.lastRequest();
    assert.equal(seen.headers.forwarded,
      'for=203.0.113.7;proto=https, for="[2001:db8::1]", for=127.0.0.1;proto=http');
  });

  it('asks the upstream for an uncompressed reply', async () => {
    // The gateway reads every reply, so the client's codings are not
    // passed on; its reply comes uncompressed.
    const res = await curl(curlPost(chatURL, chat('gpt-4o'), ['Accept-Encoding: gzip, br']));
    assert.equal(res.status, 200);
    const seen = await mock.lastRequest();
    assert.equal(seen.headers['accept-encoding'], 'identity');
  });

  it('appends to a client X-Forwarded-For', async () => {
    await curl(curlPost(chatURL, chat('gpt-4o'), ['X-Forwarded-For: 203.0.113.7']));
    const seen = await mock.lastRequest();
    assert.equal(seen.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  });

  it('sets Host to the backend host', async () => {
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(rawPost('/v1/chat/completions', chat('gpt-4o')).replace('Host: 127.0.0.1', 'Host: gateway.example'));
      const res = await client.readResponse();
      assert.equal(res.status, 200);
    } finally {
      client.destroy();
    }
    const seen = await mock.lastRequest();
    assert.equal(seen.headers.host, `127.0.0.1:${mock.port}`);
  });

  it('removes hop-by-hop headers', async () => {
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(rawPost('/v1/chat/completions', chat('gpt-4o'), [
        'Connection: keep-alive, X-Hop-Custom',
        'Keep-Alive: timeout=5',
        'X-Hop-Custom: dropped',
        'Proxy-Authorization: Basic dXNlcjpwYXNz',
        'Proxy-Connection: keep-alive',
        'TE: trailers',
        'Trailer: X-Checksum',
        'X-End-To-End: kept',
        'OpenAI-Organization: org-test',
      ]));
      const res = await client.readResponse();
      assert.equal(res.status, 200);
    } finally {
      client.destroy();
    }
    const seen = await mock.lastRequest();
    for (const name of ['keep-alive', 'x-hop-custom', 'proxy-authorization', 'proxy-connection', 'te', 'trailer'])
      assert.equal(seen.headers[name], undefined, `${name} was forwarded`);
    assert.doesNotMatch(seen.headers.connection ?? '', /x-hop-custom/i, 'Connection still lists the hop-by-hop name');
    assert.equal(seen.headers['x-end-to-end'], 'kept');
    assert.equal(seen.headers['openai-organization'], 'org-test');
  });

  it('forwards a chunked request body whole', async () => {
    const body = JSON.stringify(chat('gpt-4o'));
    const half = Math.floor(body.length / 2);
    const chunked = [body.slice(0, half), body.slice(half)]
      .map((part) => `${Buffer.byteLength(part).toString(16)}\r\n${part}\r\n`).join('') + '0\r\n\r\n';
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(rawRequest('POST', '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json', 'Transfer-Encoding: chunked',
      ], chunked));
      const res = await client.readResponse();
      assert.equal(res.status, 200);
    } finally {
      client.destroy();
    }
    const seen = await mock.lastRequest();
    assert.equal(seen.body, body);
  });

  it('forwards the body byte for byte', async () => {
    const body = '{ "model" : "gpt-4o",\n  "messages": [{"role": "user", "content": "h\\u00e9llo 日本 🙂"}],\t"temperature": 0.50 }';
    const res = await curl(curlPost(chatURL, body));
    assert.equal(res.status, 200);
    const seen = await mock.lastRequest();
    assert.equal(seen.body, body);
    assert.equal(seen.path, '/v1/chat/completions');
    assert.equal(seen.method, 'POST');
  });

  it('forwards header lines that arrive split across reads', async () => {
    const head = rawPost('/v1/chat/completions', chat('gpt-4o'), ['X-Split-Name: first-half,second-half']);
    const cuts = [head.indexOf('Split-Name'), head.indexOf('half,second'), head.indexOf('\r\n\r\n')];
    const client = await RawClient.connect(gw.port);
    try {
      let start = 0;
      for (const cut of [...cuts, head.length]) {
        await client.write(head.slice(start, cut));
        start = cut;
        // Gives the gateway time to read each piece on its own. A shorter
        // wait tests less but cannot fail the test.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const res = await client.readResponse();
      assert.equal(res.status, 200);
    } finally {
      client.destroy();
    }
    const seen = await mock.lastRequest();
    assert.equal(seen.headers['x-split-name'], 'first-half,second-half');
    assert.equal(seen.headers['content-type'], 'application/json');
  });

  const badHeads = {
    'a bare CR in a value': 'X-Bad: one\rtwo',
    'an obs-fold continuation line': 'X-Bad: one\r\n  two',
    'a bare LF inside a value': 'X-Bad: one\ntwo',
    'a NUL inside a value': 'X-Bad: one\0two',
    'a control byte inside a value': 'X-Bad: one\x01two',
    'a space inside a header name': 'X Bad: one',
    'a space before the colon': 'X-Bad : one',
    'an empty header name': ': one',
    'a header name byte outside token': 'X(Bad): one',
  };
  for (const [what, line] of Object.entries(badHeads)) {
    it(`rejects ${what}`, async () => {
      const before = (await mock.requests()).length;
      const client = await RawClient.connect(gw.port);
      try {
        await client.write(rawPost('/v1/chat/completions', chat('gpt-4o'), [line]));
        const res = await client.readResponse();
        assertError(res, 400, 'invalid_request_error', 'bad_request');
      } finally {
        client.destroy();
      }
      assert.equal((await mock.requests()).length, before, 'the request reached the mock');
    });
  }
});

describe('upstream request headers from an IPv6 client', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    const port = await freePort('::1');
    gw = await startGateway({
      listen: [`[::1]:${port}`],
      backends: { open: mockBackend(mock) },
      routes: [{ name: 'open', match: { path: '/v1/chat/completions' }, backends: ['open'] }],
    });
    gw.v6Port = port;
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('brackets and quotes the address in Forwarded', async () => {
    const res = await curl(curlPost(`http://[::1]:${gw.v6Port}/v1/chat/completions`, chat('gpt-4o')));
    assert.equal(res.status, 200, res.stderr);
    const seen = await mock.lastRequest();
    assert.equal(seen.headers['x-forwarded-for'], '::1');
    assert.equal(seen.headers.forwarded, 'for="[::1]";proto=http');
  });
});
