// HTTP clients for the tests: node:http for ordinary requests and streams,
// a raw socket client for exact bytes (pipelining, malformed requests, slow
// bodies, disconnects), and curl.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

/**
 * Send one request on a new connection and read the whole response.
 * Options: port, host (127.0.0.1), method, path, headers, body (string,
 * Buffer or object sent as JSON), tls {ca, servername}, timeoutMs, agent
 * (default: none, so one connection per request).
 * Resolves to {status, headers (lower-case names), body Buffer, text, json()}.
 */
export function request({ port, host = '127.0.0.1', method = 'GET', path: pathname = '/', headers = {}, body = null, tls: tlsOptions = null, timeoutMs = 30000, agent = false }) {
  let payload = body;
  const sendHeaders = { ...headers };
  if (body !== null && typeof body === 'object' && !Buffer.isBuffer(body)) {
    payload = JSON.stringify(body);
    sendHeaders['content-type'] ??= 'application/json';
  }

  const mod = tlsOptions ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request({
      host, port, method, path: pathname, headers: sendHeaders, agent,
      ...(tlsOptions ? { ca: tlsOptions.ca ? fs.readFileSync(tlsOptions.ca) : undefined, servername: tlsOptions.servername } : {}),
    }, (res) => {
      const parts = [];
      res.on('data', (part) => parts.push(part));
      res.on('end', () => resolve(makeResponse(res.statusCode, res.headers, Buffer.concat(parts))));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${pathname} on port ${port}: no response within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload ?? undefined);
  });
}

function makeResponse(status, headers, body) {
  const text = body.toString('utf8');
  return {
    status, headers, body, text,
    json() {
      try {
        return JSON.parse(text);
      } catch (err) {
        throw new Error(`response body is not JSON (${err.message}): ${text.slice(0, 500)}`);
      }
    },
  };
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * Split SSE text into events at blank lines; a line may end with LF, CRLF
 * or CR. Returns {events, rest} where rest is an unfinished event.
 */
export function splitEvents(text) {
  const events = [];
  const re = /(\r\n|\n|\r)(\r\n|\n|\r)/g;
  let start = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    // "\r\n" alone is one line end, not two: skip a match that is just that.
    if (m[0] === '\r\n') {
      re.lastIndex = m.index + 1;
      continue;
    }
    // A CR at the very end may be the first half of a CRLF still in flight.
    if (re.lastIndex === text.length && m[0].endsWith('\r'))
      break;
    events.push(text.slice(start, m.index));
    start = re.lastIndex;
  }
  return { events, rest: text.slice(start) };
}

/* The data of an SSE event (data lines joined by LF), or null for a
 * comment-only event. */
export function eventData(event) {
  const lines = event.split(/\r\n|\n|\r/).filter((l) => l.startsWith('data:'));
  if (lines.length === 0)
    return null;
  return lines.map((l) => l.slice(5).replace(/^ /, '')).join('\n');
}

/**
 * Open a streaming request with node:http and return a handle whose
 * nextEvent() resolves to the next SSE event with its arrival time.
 * Resolves once the response head has arrived.
 */
export function openStream({ port, path: pathname = '/v1/chat/completions', body, headers = {}, tls: tlsOptions = null }) {
  const payload = typeof body === 'string' ? body : JSON.stringify(body);
  const mod = tlsOptions ? https : http;
  return new Promise((resolve, reject) => {
    const sentAt = Date.now();
    const req = mod.request({
      host: '127.0.0.1', port, method: 'POST', path: pathname, agent: false,
      headers: { 'content-type': 'application/json', ...headers },
      ...(tlsOptions ? { ca: fs.readFileSync(tlsOptions.ca), servername: tlsOptions.servername } : {}),
    }, (res) => resolve(new EventStream(req, res, sentAt)));
    req.on('error', reject);
    req.end(payload);
  });
}

class EventStream {
  constructor(req, res, sentAt) {
    this.req = req;
    this.res = res;
    this.sentAt = sentAt;
    this.status = res.statusCode;
    this.headers = res.headers;
    this.raw = [];             // [{at, bytes}] as the socket delivered them
    this.queue = [];           // events not read yet: [{at, text, data}]
    this.waiters = [];
    this.ended = false;
    this.error = null;

    // Split on latin1 text so that a UTF-8 sequence cut between two reads
    // stays whole; each event is decoded once it is complete.
    let pending = '';
    res.on('data', (bytes) => {
      const at = Date.now();
      this.raw.push({ at, bytes });
      const { events, rest } = splitEvents(pending + bytes.toString('latin1'));
      pending = rest;
      for (const event of events)
        this.#push(at, event);
      this.#wake();
    });

    res.on('end', () => {
      const last = pending.replace(/[\r\n]+$/, '');
      if (last !== '')
        this.#push(Date.now(), last);
      this.ended = true;
      this.#wake();
    });

    res.on('error', (err) => {
      this.error = err;
      this.#wake();
    });
    req.on('error', (err) => {
      this.error = err;
      this.#wake();
    });
  }

  #push(at, latin1) {
    const text = Buffer.from(latin1, 'latin1').toString('utf8');
    this.queue.push({ at, text, data: eventData(text) });
  }

  #wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters)
      w();
  }

  /* Resolve to the next event, or null when the stream ended first. Throws
   * when the connection failed. */
  async nextEvent() {
    for (;;) {
      if (this.queue.length > 0)
        return this.queue.shift();
      if (this.error)
        throw this.error;
      if (this.ended)
        return null;
      await new Promise((resolve) => this.waiters.push(resolve));
    }
  }

  /* Resolve to the next event that carries data (skips comments). */
  async nextData() {
    for (;;) {
      const ev = await this.nextEvent();
      if (ev === null || ev.data !== null)
        return ev;
    }
  }

  /* Read to the end and return the remaining events. */
  async rest() {
    const events = [];
    for (let ev = await this.nextEvent(); ev !== null; ev = await this.nextEvent())
      events.push(ev);
    return events;
  }

  body() {
    return Buffer.concat(this.raw.map((r) => r.bytes));
  }

  /* Close the connection from the client side, as a client that gives up. */
  abort() {
    this.req.destroy();
  }
}

/* ------------------------------------------------------------------------ */
/* Raw sockets                                                              */
/* ------------------------------------------------------------------------ */

/**
 * A client that writes exact bytes and parses responses itself, so tests can
 * send malformed or pipelined requests and count bytes on the wire.
 */
export class RawClient {
  static async connect(port, { host = '127.0.0.1', tls: tlsOptions = null } = {}) {
    const socket = tlsOptions
      ? tls.connect({ host, port, ca: fs.readFileSync(tlsOptions.ca), servername: tlsOptions.servername })
      : net.connect({ host, port });
    await once(socket, tlsOptions ? 'secureConnect' : 'connect');
    return new RawClient(socket);
  }

  constructor(socket) {
    this.socket = socket;
    // Copied now because a destroyed socket no longer reports it.
    this.localPort = socket.localPort;
    this.buffer = Buffer.alloc(0);
    this.received = 0;          // every byte read from the peer
    this.sent = 0;              // every byte written
    this.closed = false;
    this.error = null;
    this.waiters = [];
    socket.on('data', (bytes) => {
      this.buffer = Buffer.concat([this.buffer, bytes]);
      this.received += bytes.length;
      this.#wake();
    });
    socket.on('end', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.closed = true;
      this.#wake();
    });
  }

  #wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters)
      w();
  }

  async #waitChange(deadline, what) {
    const left = deadline - Date.now();
    if (left <= 0)
      throw new Error(`raw client: timed out waiting for ${what}; have ${this.buffer.length} bytes: ${JSON.stringify(this.buffer.toString('latin1').slice(0, 300))}`);
    let timer;
    await new Promise((resolve) => {
      timer = setTimeout(resolve, left);
      this.waiters.push(resolve);
    });
    clearTimeout(timer);
  }

  write(data) {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
    this.sent += bytes.length;
    return new Promise((resolve, reject) => {
      this.socket.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Read one response. Resolves to {status, reason, headers (lower-case name
   * to list of values), header(name) (values joined by ", "), body Buffer,
   * chunks [Buffer] for chunked bodies, raw Buffer (the exact bytes)}.
   * A 1xx response is returned on its own. `head` true reads only up to the
   * end of the header block (for streams the test follows by hand).
   */
  async readResponse({ timeoutMs = 15000, head = false } = {}) {
    const deadline = Date.now() + timeoutMs;
    let headEnd;
    while ((headEnd = this.buffer.indexOf('\r\n\r\n')) < 0) {
      if (this.closed)
        throw new Error(`connection closed before a response head; got ${JSON.stringify(this.buffer.toString('latin1'))}`);
      await this.#waitChange(deadline, 'a response head');
    }

    const headText = this.buffer.subarray(0, headEnd).toString('latin1');
    const [statusLine, ...headerLines] = headText.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(statusLine);
    if (!m)
      throw new Error(`malformed status line ${JSON.stringify(statusLine)}`);
    const headers = {};
    for (const line of headerLines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      (headers[name] ??= []).push(line.slice(colon + 1).trim());
    }
    const res = {
      status: Number(m[1]),
      reason: m[2],
      headers,
      header: (name) => (headers[name.toLowerCase()] ? headers[name.toLowerCase()].join(', ') : undefined),
      chunks: [],
    };
    let offset = headEnd + 4;

    if (head) {
      res.raw = this.#take(offset);
      return res;
    }

    const te = res.header('transfer-encoding');
    const cl = res.header('content-length');
    if ((res.status >= 100 && res.status < 200) || res.status === 204 || res.status === 304) {
      res.body = Buffer.alloc(0);
    } else if (te && /chunked/i.test(te)) {
      offset = await this.#readChunked(offset, res, deadline);
      res.body = Buffer.concat(res.chunks);
    } else if (cl !== undefined) {
      const length = Number(cl);
      while (this.buffer.length < offset + length) {
        if (this.closed)
          throw new Error(`connection closed after ${this.buffer.length - offset} of ${length} body bytes`);
        await this.#waitChange(deadline, `${length} body bytes`);
      }
      res.body = this.buffer.subarray(offset, offset + length);
      offset += length;
    } else {
      while (!this.closed)
        await this.#waitChange(deadline, 'the end of a body delimited by close');
      res.body = this.buffer.subarray(offset);
      offset = this.buffer.length;
    }
    res.raw = this.#take(offset);
    res.text = res.body.toString('utf8');
    res.json = () => JSON.parse(res.text);
    return res;
  }

  #take(length) {
    const taken = Buffer.from(this.buffer.subarray(0, length));
    this.buffer = this.buffer.subarray(length);
    return taken;
  }

  async #readLine(offset, deadline) {
    let end;
    while ((end = this.buffer.indexOf('\r\n', offset)) < 0) {
      if (this.closed)
        throw new Error('connection closed inside a chunked body');
      await this.#waitChange(deadline, 'a chunk-size line');
    }
    return { line: this.buffer.subarray(offset, end).toString('latin1'), next: end + 2 };
  }

  async #readChunked(offset, res, deadline) {
    for (;;) {
      const { line, next } = await this.#readLine(offset, deadline);
      const size = parseInt(line.split(';')[0], 16);
      if (Number.isNaN(size))
        throw new Error(`malformed chunk-size line ${JSON.stringify(line)}`);
      offset = next;
      if (size === 0)
        break;
      while (this.buffer.length < offset + size + 2) {
        if (this.closed)
          throw new Error('connection closed inside a chunk');
        await this.#waitChange(deadline, `a chunk of ${size} bytes`);
      }
      res.chunks.push(Buffer.from(this.buffer.subarray(offset, offset + size)));
      offset += size + 2;
    }
    // Trailer section: lines up to an empty one.
    for (;;) {
      const { line, next } = await this.#readLine(offset, deadline);
      offset = next;
      if (line === '')
        return offset;
    }
  }

  /* Wait until bytes matching re have arrived (without consuming them). */
  async waitForBytes(re, { timeoutMs = 15000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.buffer.toString('latin1'))) {
      if (this.closed)
        throw new Error(`connection closed before ${re} arrived; got ${JSON.stringify(this.buffer.toString('latin1').slice(0, 300))}`);
      await this.#waitChange(deadline, String(re));
    }
  }

  /* Resolve true once the peer has closed the connection, or false when it
   * is still open after timeoutMs. */
  async waitClosed({ timeoutMs = 15000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() >= deadline)
        return false;
      await this.#waitChange(deadline, 'close').catch(() => {});
    }
    return true;
  }

  /* Close our side at once. */
  destroy() {
    this.socket.destroy();
  }
}

/* One request with the given head lines and body, as exact CRLF text. */
export function rawRequest(method, target, headers = [], body = '') {
  const lines = [`${method} ${target} HTTP/1.1`, ...headers];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

/* A JSON POST as exact bytes, with Host and Content-Length. */
export function rawPost(target, body, extraHeaders = []) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return rawRequest('POST', target, [
    'Host: 127.0.0.1',
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(text)}`,
    ...extraHeaders,
  ], text);
}

/* ------------------------------------------------------------------------ */
/* curl                                                                     */
/* ------------------------------------------------------------------------ */

/**
 * Run curl with args (URL included) and resolve to {status, headers (lower-
 * case name to last value), headerList [[name, value]], body Buffer, text,
 * json(), code, stderr}. Proxies and ~/.curlrc are ignored so that requests
 * only ever go to the loopback servers of the test.
 */
export async function curl(args, { timeoutSec = 30 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-curl-'));
  const headerFile = path.join(dir, 'headers');
  const bodyFile = path.join(dir, 'body');
  try {
    const child = spawn('curl', ['-q', '-sS', '--noproxy', '*', '--max-time', String(timeoutSec),
      '-D', headerFile, '-o', bodyFile, '-w', '%{http_code}', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s) => { stdout += s; });
    child.stderr.setEncoding('utf8').on('data', (s) => { stderr += s; });
    const [code] = await once(child, 'exit');

    const headerText = fs.existsSync(headerFile) ? fs.readFileSync(headerFile, 'latin1') : '';
    // With 100 Continue there are several header blocks: keep the last.
    const blocks = headerText.split(/\r\n\r\n/).filter((b) => b.trim() !== '');
    const last = blocks.length > 0 ? blocks[blocks.length - 1].split('\r\n') : [];
    const headerList = last.slice(1).map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
    });
    const body = fs.existsSync(bodyFile) ? fs.readFileSync(bodyFile) : Buffer.alloc(0);
    return {
      ...makeResponse(Number(stdout.trim()), Object.fromEntries(headerList), body),
      headerList, code, stderr, statusLine: last[0],
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/* curl arguments for a JSON POST. */
export function curlPost(url, body, headers = []) {
  const args = ['-X', 'POST', url, '-H', 'Content-Type: application/json',
    '--data-binary', typeof body === 'string' ? body : JSON.stringify(body)];
  for (const h of headers)
    args.push('-H', h);
  return args;
}
