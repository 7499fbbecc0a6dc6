// The setup shared by the filter tests over tool call arguments, keys,
// numbers and unexpected shapes. A scripted upstream records the request
// it gets and responds with a body that a request header names. Gateways
// route every request to it, each through one filter.

import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before } from 'node:test';

import { request, startGateway, stopAll } from './harness.mjs';

/*
 * Start the upstream and the gateways before the file's tests and stop
 * them after, checking each gateway's log after every test. The upstream
 * responds to a request with an x-stream header with the event stream
 * streams[x-stream], and to any other with the JSON body bodies[x-shape],
 * or bodies.clean without x-shape. gateways maps a gateway's name to its
 * filter (a key of filters) and to more fields of its config. The masking
 * and blocking gateways (filters mask and deny) start unless gateways
 * replaces them.
 * Returns the setup: the started gateways by name, and received, the body
 * of the last request the upstream got, as text (tests set it to null).
 */
export function useFilterSetup({ filters, bodies, streams = {}, match = { path_prefix: '/v1/' }, gateways = {} }) {
  const setup = { received: null, upstream: null };
  const configs = { masking: { filter: 'mask' }, blocking: { filter: 'deny' }, ...gateways };

  before(async () => {
    setup.upstream = await startUpstream(setup, bodies, streams);
    const url = `http://127.0.0.1:${setup.upstream.address().port}`;
    for (const [name, { filter, ...extra }] of Object.entries(configs)) {
      setup[name] = await startGateway({
        backends: { up: { url } },
        filters,
        routes: [{ name: 'chat', match, backends: ['up'], filters: [filter] }],
        ...extra,
      });
    }
  });
  afterEach(() => {
    for (const name of Object.keys(configs))
      setup[name]?.checkErrors();
  });
  after(async () => {
    await stopAll();
    setup.upstream?.close();
  });
  return setup;
}

async function startUpstream(setup, bodies, streams) {
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      setup.received = Buffer.concat(parts).toString();
      if (req.headers['x-stream']) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(streams[req.headers['x-stream']]);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(bodies[req.headers['x-shape'] ?? 'clean']);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/*
 * POST body (text, or a value to write as JSON) to path on gw. The
 * upstream of useFilterSetup() responds with the stream named shape when
 * stream is true, and otherwise with the body named shape, or its clean
 * body when shape is null.
 */
export function postShaped(gw, path, body, shape = null, stream = false) {
  const headers = { 'content-type': 'application/json' };
  if (shape)
    headers[stream ? 'x-stream' : 'x-shape'] = shape;
  return request({
    port: gw.port, method: 'POST', path, headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
