// Assertions shared by the test files.

import assert from 'node:assert/strict';

/* Assert an OpenAI-shaped error response: status, JSON content type and
 * {"error": {"message", "type", "code"}}. res is from request(), curl() or
 * RawClient.readResponse(). Returns the parsed error object. */
export function assertError(res, status, type, code) {
  const body = res.text.slice(0, 300);
  assert.equal(res.status, status, `status (body: ${body})`);
  const contentType = typeof res.header === 'function' ? res.header('content-type') : res.headers['content-type'];
  assert.match(contentType ?? '', /^application\/json\b/, 'error content type');
  const parsed = JSON.parse(res.text);
  assert.equal(typeof parsed.error, 'object', `"error" object in ${body}`);
  assert.equal(parsed.error.type, type, `error.type in ${body}`);
  assert.equal(parsed.error.code, code, `error.code in ${body}`);
  assert.equal(typeof parsed.error.message, 'string', `error.message in ${body}`);
  assert.ok(parsed.error.message.length > 0, 'error.message is empty');
  return parsed.error;
}

/* Replace the values that may differ between two responses with the same
 * content (the response id and its creation time), so that a response through
 * the gateway can be compared with one taken from the mock directly. */
export function normalizeVolatile(text) {
  return text
    .replace(/"id": ?"[^"]*"/g, '"id":"ID"')
    .replace(/"created": ?\d+/g, '"created":0');
}

/* The values of one header from a node:http or curl response. */
export function headerValue(res, name) {
  const value = typeof res.header === 'function' ? res.header(name) : res.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}
