// Client credentials and backend keys. Without api_key, a backend gets the
// client's Authorization, x-api-key and api-key headers as they came. With
// api_key, it gets none of them, only its own key in the header that
// api_key_header names. Each case runs with and without streaming, and
// across a failover from a keyed backend to one with another key or none.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import { mockBackend, startGateway, startMock, stopAll, waitFor } from './lib/harness.mjs';
import {
  NEVER_EJECT, RETRY_FREELY, apiRequests, chat, probeRequests, startMockWith,
} from './lib/failover.mjs';

const FIRST_KEY = 'sk-first-backend-5d1e';
const SECOND_KEY = 'sk-second-backend-93b0';
const FAILING_KEY = 'sk-failing-backend-2c47';

/* The credential headers, as the mock reports names: in lower case. */
const CREDENTIAL_NAMES = ['authorization', 'x-api-key', 'api-key'];

/* What a client sends: each credential header alone, then all three. */
const CLIENT_SENDS = [
  ['Authorization', { Authorization: 'Bearer client-key' }],
  ['x-api-key', { 'x-api-key': 'client-xkey' }],
  ['api-key', { 'api-key': 'client-azkey' }],
  ['all three', { Authorization: 'Bearer client-key', 'X-Api-Key': 'client-xkey', 'Api-Key': 'client-azkey' }],
];
const ALL_THREE = CLIENT_SENDS.at(-1)[1];

/* How each api_key_header value sends a key. */
const KEY_LINES = {
  authorization: (key) => ({ authorization: `Bearer ${key}` }),
  'x-api-key': (key) => ({ 'x-api-key': key }),
  'api-key': (key) => ({ 'api-key': key }),
};

/* The credential headers of a request the mock recorded. */
function credentialsIn(recorded) {
  return Object.fromEntries(Object.entries(recorded.headers)
    .filter(([name]) => CREDENTIAL_NAMES.includes(name)));
}

/* The client's headers as the mock reports them. */
function asRecorded(sent) {
  return Object.fromEntries(Object.entries(sent).map(([name, value]) => [name.toLowerCase(), value]));
}

/* Send a chat request for model with the client headers; return the
 * credential headers of the last API request that mock received. */
async function upstreamCredentials(gw, mock, model, headers, stream) {
  const res = await chat(gw, { model, headers, stream });
  assert.equal(res.status, 200, res.text);
  return credentialsIn((await apiRequests(mock, model)).at(-1));
}

/* Send a request for model with all three client headers. It fails on
 * the mock `failing` and moves to a backend on the mock `ok`. Check the
 * credential headers that each mock received. */
async function assertFailover(gw, { ok, failing }, model, { first, then }, stream) {
  const seen = await upstreamCredentials(gw, ok, model, ALL_THREE, stream);
  assert.deepEqual(credentialsIn((await apiRequests(failing, model)).at(-1)), first);
  assert.deepEqual(seen, then);
}

const MODES = [['not streamed', false], ['streamed', true]];

describe('api_key with the default header', () => {
  let ok;
  let failing;
  let gw;

  before(async () => {
    ok = await startMock();
    failing = await startMockWith('status=500');
    gw = await startGateway({
      backends: {
        open: mockBackend(ok),
        keyed: mockBackend(ok, { api_key: FIRST_KEY }),
        second: mockBackend(ok, { api_key: SECOND_KEY }),
        failing: mockBackend(failing, { api_key: FAILING_KEY, health: NEVER_EJECT }),
      },
      routes: [
        { name: 'open', match: { model: 'open' }, backends: ['open'] },
        { name: 'keyed', match: { model: 'keyed' }, backends: ['keyed'] },
        { name: 'to-keyed', match: { model: 'to-keyed' }, backends: ['failing', 'second'], retry: RETRY_FREELY },
        { name: 'to-open', match: { model: 'to-open' }, backends: ['failing', 'open'], retry: RETRY_FREELY },
      ],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  for (const [mode, stream] of MODES) {
    for (const [label, sent] of CLIENT_SENDS) {
      it(`no api_key passes ${label}, ${mode}`, async () => {
        assert.deepEqual(await upstreamCredentials(gw, ok, 'open', sent, stream), asRecorded(sent));
      });

      it(`api_key replaces ${label}, ${mode}`, async () => {
        assert.deepEqual(await upstreamCredentials(gw, ok, 'keyed', sent, stream),
          KEY_LINES.authorization(FIRST_KEY));
      });
    }

    it(`failover to another key, ${mode}`, () =>
      assertFailover(gw, { ok, failing }, 'to-keyed', {
        first: KEY_LINES.authorization(FAILING_KEY), then: KEY_LINES.authorization(SECOND_KEY),
      }, stream));

    it(`failover to no key, ${mode}`, () =>
      assertFailover(gw, { ok, failing }, 'to-open', {
        first: KEY_LINES.authorization(FAILING_KEY), then: asRecorded(ALL_THREE),
      }, stream));
  }
});

describe('api_key_header', () => {
  let ok;
  let failing;
  let probed;
  let gw;

  before(async () => {
    ok = await startMock();
    failing = await startMockWith('status=500');
    probed = await startMock();
    const backends = {
      open: mockBackend(ok),
      azure: mockBackend(ok, { api_key: SECOND_KEY, api_key_header: 'api-key' }),
      failing: mockBackend(failing, { api_key: FAILING_KEY, api_key_header: 'x-api-key', health: NEVER_EJECT }),
      probed: mockBackend(probed, {
        api_key: FIRST_KEY, api_key_header: 'x-api-key',
        health: { probe: { path: '/v1/models', interval: '200ms', timeout: '1s' } },
      }),
    };
    const routes = [
      { name: 'to-azure', match: { model: 'to-azure' }, backends: ['failing', 'azure'], retry: RETRY_FREELY },
      { name: 'to-open', match: { model: 'to-open' }, backends: ['failing', 'open'], retry: RETRY_FREELY },
    ];
    for (const header of Object.keys(KEY_LINES)) {
      backends[header] = mockBackend(ok, { api_key: FIRST_KEY, api_key_header: header });
      routes.push({ name: header, match: { model: header }, backends: [header] });
    }
    gw = await startGateway({ backends, routes });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  for (const [mode, stream] of MODES) {
    for (const header of Object.keys(KEY_LINES)) {
      for (const [label, sent] of CLIENT_SENDS) {
        it(`${header} replaces ${label}, ${mode}`, async () => {
          assert.deepEqual(await upstreamCredentials(gw, ok, header, sent, stream),
            KEY_LINES[header](FIRST_KEY));
        });
      }
    }

    it(`failover to another header, ${mode}`, () =>
      assertFailover(gw, { ok, failing }, 'to-azure', {
        first: KEY_LINES['x-api-key'](FAILING_KEY), then: KEY_LINES['api-key'](SECOND_KEY),
      }, stream));

    it(`failover to no key, ${mode}`, () =>
      assertFailover(gw, { ok, failing }, 'to-open', {
        first: KEY_LINES['x-api-key'](FAILING_KEY), then: asRecorded(ALL_THREE),
      }, stream));
  }

  it('probe sends key in x-api-key', async () => {
    const probes = await waitFor(async () => {
      const seen = await probeRequests(probed);
      return seen.length > 0 && seen;
    }, { message: 'a probe of backend "probed"' });
    assert.deepEqual(credentialsIn(probes[0]), KEY_LINES['x-api-key'](FIRST_KEY));
  });

  it('never prints a key', () => {
    const output = [...gw.stderr, ...gw.stdout].join('\n');
    for (const key of [FIRST_KEY, SECOND_KEY, FAILING_KEY])
      assert.ok(!output.includes(key), `${key} appears in the gateway output`);
  });
});
