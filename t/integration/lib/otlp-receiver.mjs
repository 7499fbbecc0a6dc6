// A test OTLP/HTTP receiver for traces. It checks every export strictly
// against the JSON mapping of the official protobuf definitions, using the
// protobufjs root that @opentelemetry/otlp-transformer generates from
// opentelemetry-proto, and responds with a scripted sequence of statuses.
//
// Strictness: a body is decoded with the generated fromObject(), checked
// with verify(), encoded back with toObject() in the OTLP JSON form (64-bit
// integers as decimal strings, enums as integers), and compared with what
// was received. A key the message does not define, a value of the wrong
// type (a number where the mapping wants a string, a string for a bool) or a
// malformed id therefore shows up as a difference, reported with its path.
// Trace and span ids are the OTLP exception to the protobuf mapping: hex,
// not base64, exactly 32 and 16 digits.
//
// A binary body (application/x-protobuf) is decoded with the same
// generated root and encoded again: the bytes must come back unchanged.
// protobufjs skips an unknown field number and reads a field of the wrong
// wire type as something else. It writes fields in number order with
// minimal varints. So a stray field, a wrong type, a padded length or
// invalid UTF-8 in a string shows up as a difference, reported with its
// offset. The message is then turned into the OTLP JSON form and checked
// as a JSON body is, so every test sees spans in one form whatever the
// protocol.

import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';

import { waitFor } from './harness.mjs';

const require = createRequire(import.meta.url);
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root.js');
const ExportTraceServiceRequest = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const ExportTraceServiceResponse = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;

const TO_OBJECT = { longs: String, enums: Number, bytes: String, json: true };

/* Ids of Span and Span.Link, by key, with their size in bytes; parentSpanId
 * may also be empty or absent (a root span). */
const ID_SIZES = { traceId: 16, spanId: 8, parentSpanId: 8 };

function checkHexId(value, size, path, optional) {
  if (typeof value !== 'string')
    throw new Error(`${path}: expected a hex string, got ${JSON.stringify(value)}`);
  if (optional && value === '')
    return;
  if (!new RegExp(`^[0-9a-fA-F]{${size * 2}}$`).test(value))
    throw new Error(`${path}: expected ${size * 2} hex digits, got ${JSON.stringify(value)}`);
  if (/^0+$/.test(value))
    throw new Error(`${path}: an all-zero id is invalid`);
}

/* Copy of a span or link with its hex ids turned into bytes, as the
 * generated code expects them. The ids are checked on the way. */
function withIdBytes(obj, path) {
  if (obj === null || typeof obj !== 'object')
    return obj;
  const copy = { ...obj };
  for (const [key, size] of Object.entries(ID_SIZES)) {
    if (!(key in copy) || copy[key] === null)
      continue;
    checkHexId(copy[key], size, `${path}.${key}`, key === 'parentSpanId');
    copy[key] = Buffer.from(copy[key], 'hex');
  }
  if (Array.isArray(copy.links))
    copy.links = copy.links.map((link, i) => withIdBytes(link, `${path}.links[${i}]`));
  return copy;
}

function mapSpans(body, fn) {
  if (body === null || typeof body !== 'object' || !Array.isArray(body.resourceSpans))
    return body;
  return {
    ...body,
    resourceSpans: body.resourceSpans.map((rs, i) => (rs && Array.isArray(rs.scopeSpans) ? {
      ...rs,
      scopeSpans: rs.scopeSpans.map((ss, j) => (ss && Array.isArray(ss.spans) ? {
        ...ss,
        spans: ss.spans.map((span, k) => fn(span, `resourceSpans[${i}].scopeSpans[${j}].spans[${k}]`)),
      } : ss)),
    } : rs)),
  };
}

/* The base64 ids toObject() wrote, back to lowercase hex. */
function idsToHex(span) {
  const copy = { ...span };
  for (const key of Object.keys(ID_SIZES)) {
    if (typeof copy[key] === 'string')
      copy[key] = Buffer.from(copy[key], 'base64').toString('hex');
  }
  if (Array.isArray(copy.links))
    copy.links = copy.links.map(idsToHex);
  return copy;
}

/* Values the mapping treats as absent: null, and an empty array or id. */
function isAbsent(value) {
  return value === null || value === undefined || (Array.isArray(value) && value.length === 0);
}

function lowerIds(span) {
  const copy = { ...span };
  for (const key of Object.keys(ID_SIZES)) {
    if (typeof copy[key] === 'string')
      copy[key] = copy[key].toLowerCase();
  }
  if (copy.parentSpanId === '')
    delete copy.parentSpanId;
  return copy;
}

function child(path, key) {
  return path ? `${path}.${key}` : key;
}

/* The first difference between what was sent and what the schema kept. */
function difference(sent, kept, path) {
  if (Array.isArray(sent) || Array.isArray(kept)) {
    if (!Array.isArray(sent) || !Array.isArray(kept))
      return `${path}: expected an array, got ${JSON.stringify(sent)}`;
    if (sent.length !== kept.length)
      return `${path}: ${sent.length} elements sent, ${kept.length} kept`;
    for (let i = 0; i < sent.length; i++) {
      const d = difference(sent[i], kept[i], `${path}[${i}]`);
      if (d)
        return d;
    }
    return null;
  }
  if (sent !== null && typeof sent === 'object') {
    if (kept === null || typeof kept !== 'object')
      return `${path || 'the body'}: ${JSON.stringify(sent)} is not valid here`;
    const keys = new Set([...Object.keys(sent), ...Object.keys(kept)]);
    for (const key of keys) {
      const inSent = !isAbsent(sent[key]);
      const inKept = !isAbsent(kept[key]);
      if (inSent && !inKept)
        return `${child(path, key)}: not a field of this message (or a value of the wrong type)`;
      if (!inSent && inKept)
        return `${child(path, key)}: ${JSON.stringify(sent[key])} was read as ${JSON.stringify(kept[key])}`;
      if (inSent) {
        const d = difference(sent[key], kept[key], child(path, key));
        if (d)
          return d;
      }
    }
    return null;
  }
  if (sent !== kept)
    return `${path}: ${JSON.stringify(sent)} is not valid here (read as ${JSON.stringify(kept)})`;
  return null;
}

/**
 * Check body (parsed JSON) as an OTLP ExportTraceServiceRequest. Returns
 * null when valid, else a message naming the first problem and its path.
 */
export function otlpTraceProblem(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    return 'the body is not a JSON object';
  let message;
  try {
    message = ExportTraceServiceRequest.fromObject(mapSpans(body, withIdBytes));
  } catch (err) {
    return err.message;
  }
  const verifyError = ExportTraceServiceRequest.verify(message);
  if (verifyError)
    return verifyError;
  const kept = mapSpans(ExportTraceServiceRequest.toObject(message, TO_OBJECT), idsToHex);
  return difference(mapSpans(body, lowerIds), kept, '');
}

/* The offset of the first byte where a and b differ, or -1. */
function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i])
      return i;
  }
  return a.length === b.length ? -1 : n;
}

/**
 * Decode bytes (a Buffer) as a binary ExportTraceServiceRequest. Returns
 * {body} with the message in the OTLP JSON form, or {problem} naming what
 * is wrong: bytes that do not decode, or that decode to a message whose
 * encoding differs from them.
 */
export function decodeOtlpProtobuf(bytes) {
  let message;
  try {
    message = ExportTraceServiceRequest.decode(bytes);
  } catch (err) {
    return { problem: `the body does not decode: ${err.message}` };
  }
  const again = Buffer.from(ExportTraceServiceRequest.encode(message).finish());
  const at = firstDifference(bytes, again);
  if (at >= 0) {
    return {
      problem: `the bytes from offset ${at} of ${bytes.length} are not the canonical `
        + `encoding of what they decode to (${again.length} bytes): an unknown field, `
        + 'a wrong wire type, a padded varint or invalid UTF-8',
    };
  }
  return { body: mapSpans(ExportTraceServiceRequest.toObject(message, TO_OBJECT), idsToHex) };
}

/* An AnyValue as a plain JS value; intValue becomes a BigInt. */
function anyValue(v) {
  if ('stringValue' in v)
    return v.stringValue;
  if ('intValue' in v)
    return BigInt(v.intValue);
  if ('doubleValue' in v)
    return Number(v.doubleValue);
  if ('boolValue' in v)
    return v.boolValue;
  if ('arrayValue' in v)
    return (v.arrayValue.values || []).map(anyValue);
  return undefined;
}

export function attributeMap(list = []) {
  const map = {};
  for (const kv of list)
    map[kv.key] = anyValue(kv.value);
  return map;
}

/* A received span in a form tests can read: times as BigInt nanoseconds,
 * attributes as an object, resource attributes alongside. A field at its
 * default value, which protobuf leaves out, reads as that value. */
function flatten(span, resource, scope) {
  return {
    traceId: span.traceId,
    spanId: span.spanId,
    parentSpanId: span.parentSpanId || '',
    traceState: span.traceState || '',
    flags: span.flags || 0,
    name: span.name || '',
    kind: span.kind || 0,
    start: BigInt(span.startTimeUnixNano),
    end: BigInt(span.endTimeUnixNano),
    attributes: attributeMap(span.attributes),
    events: (span.events || []).map((e) => ({
      name: e.name || '', time: BigInt(e.timeUnixNano || 0), attributes: attributeMap(e.attributes),
    })),
    status: { code: (span.status && span.status.code) || 0, message: (span.status && span.status.message) || '' },
    resource: attributeMap(resource && resource.attributes),
    scope,
  };
}

/* Every span of a valid export body, flattened. */
export function spansOf(body) {
  const spans = [];
  for (const rs of body.resourceSpans || []) {
    for (const ss of rs.scopeSpans || []) {
      for (const span of ss.spans || [])
        spans.push(flatten(span, rs.resource, ss.scope));
    }
  }
  return spans;
}

/**
 * Start a receiver on a free loopback port. answers lists the scripted
 * responses, used in turn, then 200: {status, retryAfter, hang, partial}.
 * With hang the receiver never responds, and the request stays open until
 * close(). A 200 comes in the encoding of the request, as OTLP/HTTP
 * requires, with partial ({rejectedSpans, errorMessage}) as its partial
 * success; other statuses get a JSON body, which tollgate does not read.
 * With tls ({cert, key}, as makeCertificates() returns them) it serves
 * https, and endpoint is an https:// URL.
 */
export async function startOtlpReceiver({ answers = [], tls = null } = {}) {
  const receiver = new OtlpReceiver(answers, tls);
  await receiver.listen();
  return receiver;
}

/* Return tracing settings that export to receiver within 50 ms and retry
 * within 40 ms, so tests wait little. The otlp, batch and retry members of
 * extra are merged into those sections, and its other members are added. */
export function quickTracing(receiver, extra = {}) {
  const { otlp = {}, batch = {}, retry = {}, ...rest } = extra;
  return {
    otlp: { endpoint: receiver.endpoint, shutdown_timeout: '1s', ...otlp },
    batch: { schedule_delay: '50ms', ...batch },
    retry: { initial_backoff: '20ms', max_backoff: '40ms', ...retry },
    ...rest,
  };
}

/* Return the access log line of the request requestId, its trace id, and
 * the spans of that trace once count of them have reached receiver. Throws
 * when the line has no trace id or the trace has more spans than count. */
export async function requestSpans(gw, receiver, requestId, count) {
  const entry = await gw.accessFor(requestId);
  if (!/^[0-9a-f]{32}$/.test(entry.trace_id ?? ''))
    throw new Error(`the access log line of ${requestId} has no trace_id: ${JSON.stringify(entry)}`);
  const spans = await waitFor(() => {
    const found = receiver.spansOfTrace(entry.trace_id);
    return found.length >= count ? found : null;
  }, { message: `${count} spans of trace ${entry.trace_id}` });
  if (spans.length !== count)
    throw new Error(`trace ${entry.trace_id} has ${spans.length} spans, not ${count}`);
  return { entry, traceId: entry.trace_id, spans };
}

/* The Content-Type and body of a 200 to an export sent with protocol,
 * reporting partial as its partial success when given. */
function successBody(protocol, partial) {
  const response = ExportTraceServiceResponse.fromObject(partial ? { partialSuccess: partial } : {});
  if (protocol === 'http/protobuf')
    return ['application/x-protobuf', Buffer.from(ExportTraceServiceResponse.encode(response).finish())];
  // The protobuf JSON mapping, as collectors write it: an int64 is a string.
  return ['application/json', JSON.stringify(ExportTraceServiceResponse.toObject(response, { longs: String }))];
}

class OtlpReceiver {
  constructor(answers, tls) {
    this.answers = [...answers];
    this.tls = tls;
    this.requests = [];     // {time, headers, body, problem, status}
    this.problems = [];     // invalid exports, with the reason
    this.hanging = [];
    this.connections = 0;   // accepted, after the TLS handshake with tls
    this.sockets = new Set();       // open connections
    this.tlsErrors = [];    // failed handshakes, with tls
    this.server = this.#createServer();
  }

  #createServer() {
    const handle = (req, res) => this.#handle(req, res);
    const accepted = (socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    };
    if (!this.tls) {
      const server = http.createServer(handle);
      server.on('connection', accepted);
      return server;
    }
    const server = https.createServer({
      cert: fs.readFileSync(this.tls.cert), key: fs.readFileSync(this.tls.key),
    }, handle);
    server.on('secureConnection', accepted);
    server.on('tlsClientError', (err) => { this.tlsErrors.push(err.message); });
    return server;
  }

  async listen(port = 0) {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    this.endpoint = `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}/v1/traces`;
  }

  /* Close the connections no request is using, as a collector's idle
   * timeout does. */
  closeIdleConnections() {
    this.server.closeIdleConnections();
  }

  /* Close the listener and every connection, then listen on the same port
   * again, as a restarted collector does. */
  async restart() {
    await this.close();
    this.server = this.#createServer();
    await this.listen(this.port);
  }

  #handle(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const bytes = Buffer.concat(chunks);
      const text = bytes.toString('utf8');
      const record = {
        time: Date.now(), method: req.method, path: req.url, headers: req.headers, text, bytes,
      };
      record.problem = this.#check(req, bytes, record);
      if (record.problem)
        this.problems.push(record.problem);
      this.requests.push(record);

      const answer = this.answers.length > 0 ? this.answers.shift() : { status: 200 };
      record.status = answer.status;
      if (answer.hang) {
        this.hanging.push(res);
        return;
      }
      const [type, body] = answer.status === 200 ? successBody(record.protocol, answer.partial)
        : ['application/json', '{"code": 14, "message": "scripted failure"}'];
      const headers = { 'content-type': type };
      if (answer.retryAfter !== undefined)
        headers['retry-after'] = String(answer.retryAfter);
      res.writeHead(answer.status, headers);
      res.end(body);
    });
  }

  /* Check an export and set record.body to it in the OTLP JSON form;
   * record.protocol is "http/json" or "http/protobuf", after the
   * Content-Type. */
  #check(req, bytes, record) {
    const type = req.headers['content-type'] || '';
    if (req.method !== 'POST' || req.url !== '/v1/traces')
      return `${req.method} ${req.url}: expected POST /v1/traces`;
    if (/^application\/x-protobuf\b/.test(type)) {
      record.protocol = 'http/protobuf';
      const decoded = decodeOtlpProtobuf(bytes);
      if (decoded.problem)
        return `invalid ExportTraceServiceRequest: ${decoded.problem}`;
      record.body = decoded.body;
    } else if (/^application\/json\b/.test(type)) {
      record.protocol = 'http/json';
      try {
        record.body = JSON.parse(bytes.toString('utf8'));
      } catch (err) {
        return `the body is not JSON: ${err.message}`;
      }
    } else {
      return `Content-Type ${type}: expected application/x-protobuf or application/json`;
    }
    const problem = otlpTraceProblem(record.body);
    return problem ? `invalid ExportTraceServiceRequest: ${problem}` : null;
  }

  /* Every span received in a valid export, flattened, in arrival order. */
  spans() {
    return this.requests.filter((r) => !r.problem && r.body).flatMap((r) => spansOf(r.body));
  }

  spansOfTrace(traceId) {
    return this.spans().filter((s) => s.traceId === traceId);
  }

  /* Throw when any export was invalid. */
  assertValid() {
    if (this.problems.length > 0)
      throw new Error(`invalid OTLP exports:\n${this.problems.join('\n')}`);
  }

  async close() {
    for (const res of this.hanging.splice(0))
      res.destroy();
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }
}
