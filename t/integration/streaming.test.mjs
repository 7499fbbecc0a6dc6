// Response relay: recorded fixtures byte for byte, server-sent event streams
// relayed as they arrive (no buffering), awkward upstream write boundaries,
// and an upstream that dies mid-stream.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, basicConfig, curl, curlPost, eventData, stopAll, openStream,
  rawPost, splitEvents, startGateway, startMock,
} from './lib/harness.mjs';
import { normalizeVolatile } from './lib/checks.mjs';
import { chunkEvent, startScripted } from './lib/failover.mjs';

const messages = [{ role: 'user', content: 'Hello!' }];

/* Fixtures replayed by the mock, with the endpoint each was recorded on. */
const FIXTURES = [
  { name: 'chat-basic', path: '/v1/chat/completions', body: { model: 'gpt-5-nano', messages } },
  { name: 'chat-streaming', path: '/v1/chat/completions', body: { model: 'gpt-5-nano', messages, stream: true } },
  { name: 'chat-tools', path: '/v1/chat/completions', body: { model: 'gpt-5-nano', messages } },
  { name: 'completion-basic', path: '/v1/completions', body: { model: 'babbage-002', prompt: 'def fib(n):' } },
  { name: 'completion-streaming', path: '/v1/completions', body: { model: 'babbage-002', prompt: 'def fib(n):', stream: true } },
  { name: 'embeddings-basic', path: '/v1/embeddings', body: { model: 'text-embedding-3-small', input: 'How do I reset my password?' } },
  { name: 'chat-bad-request', path: '/v1/chat/completions', body: { model: 'gpt-5-nano', messages } },
];

describe('response relay', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(basicConfig(mock));
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  for (const fixture of FIXTURES) {
    it(`passes fixture ${fixture.name} through byte for byte`, async () => {
      const header = [`x-mock: fixture=${fixture.name}`];
      const direct = await curl(curlPost(`${mock.url}${fixture.path}`, fixture.body, header));
      const proxied = await curl(curlPost(`${gw.baseURL}${fixture.path}`, fixture.body, header));

      assert.ok(direct.body.length > 0, 'the mock replayed an empty body');
      assert.equal(proxied.status, direct.status);
      assert.equal(proxied.headers['content-type'], direct.headers['content-type']);
      assert.ok(proxied.body.equals(direct.body),
        `bodies differ: ${proxied.body.length} bytes through the gateway, ${direct.body.length} direct`);

      if (/^text\/event-stream/.test(direct.headers['content-type'])) {
        assert.equal(proxied.headers['transfer-encoding'], 'chunked', 'a stream goes to an HTTP/1.1 client chunked');
        assert.equal(proxied.headers['content-length'], undefined);
      } else {
        assert.equal(proxied.headers['content-length'], String(direct.body.length));
      }
    });
  }

  it('frames a stream as valid chunks', async () => {
    const body = FIXTURES[1].body;
    const client = await RawClient.connect(gw.port);
    let res;
    try {
      await client.write(rawPost('/v1/chat/completions', body, ['x-mock: fixture=chat-streaming']));
      res = await client.readResponse();
    } finally {
      client.destroy();
    }
    const direct = await curl(curlPost(`${mock.url}/v1/chat/completions`, body, ['x-mock: fixture=chat-streaming']));
    assert.equal(res.status, 200);
    assert.ok(res.chunks.length > 0, 'no chunks');
    assert.ok(res.chunks.every((c) => c.length > 0), 'an empty chunk before the last one');
    assert.ok(res.body.equals(direct.body), 'the chunks do not add up to the direct body');
  });

  it('sends the first content event before the upstream sends the next', async () => {
    // The mock waits EVENT_DELAY between events: the role-only chunk at 0,
    // the first content at EVENT_DELAY, the next at 2 * EVENT_DELAY. The
    // gateway holds content-free events until the first content (so an
    // error before it can still fail over), so the first content event is
    // what must arrive before the upstream sends the next one.
    const EVENT_DELAY = 2000;
    const stream = await openStream({
      port: gw.port,
      body: { model: 'gpt-4o', messages, stream: true },
      headers: { 'x-mock': `events=3;event_delay=${EVENT_DELAY}ms` },
    });
    const hasContent = (ev) => {
      try {
        return Boolean(JSON.parse(ev.data).choices?.[0]?.delta?.content);
      } catch {
        return false;
      }
    };
    try {
      assert.equal(stream.status, 200);
      assert.match(stream.headers['content-type'], /^text\/event-stream/);
      let first = await stream.nextData();
      while (first !== null && !hasContent(first))
        first = await stream.nextData();
      assert.notEqual(first, null, 'the stream ended without a content event');
      assert.ok(first.at - stream.sentAt < 2 * EVENT_DELAY,
        `the first content arrived ${first.at - stream.sentAt} ms after the request, not before the next was due`);
      assert.equal(stream.queue.filter((e) => e.data !== null).length, 0, 'the next event arrived with the first content');

      const second = await stream.nextData();
      assert.notEqual(second, null, 'the stream ended after one content event');
      assert.ok(second.at > first.at, 'the next event arrived in the same read as the first content');
    } finally {
      stream.abort();
    }
  });

  for (const [what, option] of [['inside UTF-8 sequences', 'unicode=1'], ['inside CRLF line ends', 'crlf=1;unicode=1']]) {
    it(`relays a stream split ${what}`, async () => {
      const body = { model: 'gpt-4o', messages, stream: true };
      const url = `${mock.url}/v1/chat/completions`;
      const whole = await curl(curlPost(url, body, [`x-mock: events=12;${option}`]));
      const offsets = awkwardOffsets(whole.body, option.startsWith('crlf'));
      assert.ok(offsets.length >= 3, `too few awkward offsets found in ${whole.text.slice(0, 200)}`);

      const header = [`x-mock: events=12;${option};split=${offsets.join(',')}`];
      const direct = await curl(curlPost(url, body, header));
      const proxied = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, body, header));
      assert.equal(proxied.status, 200);
      assert.equal(normalizeVolatile(proxied.body.toString('latin1')), normalizeVolatile(direct.body.toString('latin1')));
      assert.equal(normalizeVolatile(proxied.body.toString('latin1')), normalizeVolatile(whole.body.toString('latin1')));
      assert.equal(eventData(splitEvents(proxied.text).events.at(-1)), '[DONE]');
    });
  }

  const FRAMINGS = {
    'keep-alive comments': 'keepalive=2',
    'lone CR line ends': 'cr=1',
    '"data:" without a space': 'nospace=1',
    'a usage chunk': 'usage=on',
  };
  for (const [what, option] of Object.entries(FRAMINGS)) {
    it(`relays a stream with ${what} unchanged`, async () => {
      // A client that does not ask for usage gets no usage chunk from the
      // gateway (it asks the upstream for one only to count tokens).
      const usage = option === 'usage=on' ? { stream_options: { include_usage: true } } : {};
      const body = { model: 'gpt-4o', messages, stream: true, ...usage };
      const header = [`x-mock: events=4;${option}`];
      // The upstream sends comments before the usage chunk the gateway
      // asked for too, and they are passed on as they come.
      const comments = option.startsWith('keepalive');
      const directHeader = comments ? [`x-mock: events=4;${option};usage=on`] : header;
      const direct = await curl(curlPost(`${mock.url}/v1/chat/completions`, body, directHeader));
      const proxied = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, body, header));
      assert.equal(direct.status, 200, direct.text);
      assert.equal(proxied.status, 200);
      const expected = !comments ? direct.text
        : direct.text.replace(/^data: [^\n]*"choices":\[\][^\n]*\n\n/m, '')
          .replaceAll(',"usage":null}\n', '}\n');
      assert.equal(normalizeVolatile(proxied.text), normalizeVolatile(expected));
    });
  }

  it('signals a cut when the upstream closes mid-stream', async () => {
    gw.expectErrors(/upstream closed|before the response was complete/i);
    const client = await RawClient.connect(gw.port);
    let res = null;
    try {
      await client.write(rawPost('/v1/chat/completions', { model: 'gpt-4o', messages, stream: true },
        ['x-mock: events=5;close_after=2', 'X-Request-Id: upstream-closes-mid-stream']));
      // Either way of telling the client is fine: a chunked body that ends
      // without its last chunk, or a complete one whose last event is an
      // error. A stream that ends as if nothing happened is not.
      res = await client.readResponse().catch(() => null);
    } finally {
      client.destroy();
    }
    const received = client.buffer.toString('latin1');
    if (res === null) {
      assert.match(received, /^HTTP\/1\.1 200 /, 'no response head before the cut');
    } else {
      assert.equal(res.status, 200);
      const { events } = splitEvents(res.text);
      const last = JSON.parse(eventData(events.at(-1)));
      assert.equal(last.error?.type, 'upstream_error', `last event: ${events.at(-1)}`);
      assert.equal(last.error?.code, 'upstream_failed');
    }
    assert.doesNotMatch(res ? res.text : received, /\[DONE\]/);

    const entry = await gw.accessFor('upstream-closes-mid-stream');
    assert.equal(entry.status, 200);
    assert.equal(entry.stream, true);
    assert.equal(entry.termination, 'SD');
  });
});

// A stream that the upstream fails ends with an error event and the last
// chunk, a complete response, so the connection stays open for the next
// request. A close after that chunk would reset a keep-alive client that
// had already sent its next request on it.
describe('connection after a failed stream', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(basicConfig(mock, { backend: { timeouts: { idle: '300ms' } } }));
    gw.expectErrors(/upstream/i);
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  // The option that fails the stream, and the type of the last event: the
  // upstream's own error event is passed on, the other two get the
  // gateway's.
  const FAILURES = {
    'an error event': ['stream_error=2', 'server_error'],
    'a closed connection': ['close_after=2', 'upstream_error'],
    'a stall past the idle timeout': ['stall_after=2', 'upstream_error'],
  };
  for (const [what, [option, type]] of Object.entries(FAILURES)) {
    it(`serves the next request after ${what}`, async () => {
      const client = await RawClient.connect(gw.port);
      try {
        await client.write(rawPost('/v1/chat/completions', { model: 'gpt-4o', messages, stream: true },
          [`x-mock: events=5;${option}`]));
        const first = await client.readResponse();
        assert.equal(first.status, 200);
        assert.equal(first.header('connection'), undefined, 'the failed stream announced a close');
        const last = JSON.parse(eventData(splitEvents(first.body.toString('utf8')).events.at(-1)));
        assert.equal(last.error?.type, type, `last event: ${JSON.stringify(last)}`);

        await client.write(rawPost('/v1/chat/completions', { model: 'gpt-4o', messages }));
        const second = await client.readResponse();
        assert.equal(second.status, 200);
        assert.ok(second.body.length > 0, 'the second response has no body');
      } finally {
        client.destroy();
      }
    });
  }
});

/* Byte offsets in an SSE body that fall inside a multi-byte UTF-8 sequence
 * or, with crlf, between the CR and LF of a line end: at most 40, spread
 * over the whole body. */
function awkwardOffsets(body, crlf) {
  const all = [];
  for (let i = 1; i < body.length; i++) {
    const insideUtf8 = (body[i] & 0xc0) === 0x80;
    const insideCrlf = body[i - 1] === 0x0d && body[i] === 0x0a;
    if (crlf ? insideCrlf : insideUtf8)
      all.push(i);
  }
  const step = Math.max(1, Math.ceil(all.length / 40));
  return all.filter((_, i) => i % step === 0);
}

/*
 * A body that ends cleanly after the last line of an event, without the
 * blank line that would end the event: the event is completed and relayed,
 * so a last [DONE] or message_stop ends the stream well, as clients such as
 * openai-node end it when they talk to the upstream directly.
 */
describe('a last event without its blank line', () => {
  let upstream = null;

  afterEach(async () => {
    await stopAll();
    upstream?.close();
    upstream = null;
  });

  const LAST_EVENTS = {
    'data: [DONE]': [chunkEvent({ role: 'assistant', content: '' }), chunkEvent({ content: 'Hi' }),
      chunkEvent({}, 'stop'), 'data: [DONE]\n'],
    'a message_stop': ['event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n',
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\n\n',
      'event: message_stop\ndata: {"type":"message_stop"}\n'],
  };
  for (const [what, events] of Object.entries(LAST_EVENTS)) {
    it(`ends a stream whose last line is ${what} well`, async () => {
      upstream = await startScripted((req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const event of events)
          res.write(event);
        res.end();
      });
      const gw = await startGateway({
        backends: { s: { url: upstream.url } },
        routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['s'] }],
      });
      const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`,
        { model: 'gpt-4o', messages, stream: true }, ['X-Request-Id: last-event-' + what.length]));
      assert.equal(res.status, 200);
      assert.equal(res.text, `${events.join('')}\n`, 'the stream, its last event completed');
      assert.doesNotMatch(res.text, /"error"/);

      const entry = await gw.accessFor('last-event-' + what.length);
      assert.equal(entry.termination, '--');
      gw.checkErrors();
    });
  }
});
