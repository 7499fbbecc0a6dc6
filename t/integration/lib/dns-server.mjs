// A DNS server for tests, on UDP 127.0.0.1 only. It answers A and AAAA
// questions for the names it is given, with the TTL it is given, counts
// the questions by type, and can be set to fail (SERVFAIL) or to go
// silent. Other names get NXDOMAIN, with an SOA record that gives its
// negative TTL when negativeTtl is set. The question is echoed byte for byte:
// libevent can randomize the case of the names it asks (its randomize-case
// option), and a reply must carry the question as it was asked.

import dgram from 'node:dgram';

const TYPES = { 1: 'A', 28: 'AAAA' };
const RCODE = { ok: 0, servfail: 2, nxdomain: 3 };

/* The question of a query: its bytes, lowercase name and type, or null
 * for a packet that is not one query. */
function readQuestion(msg) {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1)
    return null;
  const labels = [];
  let at = 12;
  while (at < msg.length && msg[at] !== 0) {
    const len = msg[at];
    if (len > 63 || at + 1 + len > msg.length)
      return null;
    labels.push(msg.subarray(at + 1, at + 1 + len).toString('latin1'));
    at += 1 + len;
  }
  if (at + 5 > msg.length)
    return null;
  const end = at + 5;
  return {
    bytes: msg.subarray(12, end),
    name: labels.join('.').toLowerCase(),
    type: TYPES[msg.readUInt16BE(at + 1)] ?? 'other',
  };
}

function header(id, rcode, answers, authority) {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x8180 | rcode, 2);   // response, recursion desired and available
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(answers, 6);
  h.writeUInt16BE(authority, 8);
  return h;
}

/* An SOA record for the authority section of a negative answer: its TTL
 * and its MINIMUM field are both ttl, which RFC 2308 makes the time a
 * resolver may keep the answer. The zone and server names are the root. */
function soaRecord(ttl) {
  const rr = Buffer.alloc(12 + 2 + 20);
  rr.writeUInt16BE(0xc00c, 0);          // the name of the question
  rr.writeUInt16BE(6, 2);               // SOA
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(ttl, 6);
  rr.writeUInt16BE(2 + 20, 10);
  // MNAME and RNAME are the root (two zero bytes), then SERIAL, REFRESH,
  // RETRY, EXPIRE and MINIMUM.
  [1, 3600, 600, 86400, ttl].forEach((v, i) => rr.writeUInt32BE(v, 14 + i * 4));
  return rr;
}

function record(type, ttl, address) {
  const data = type === 'A' ? Buffer.from(address.split('.').map(Number)) : ipv6Bytes(address);
  const rr = Buffer.alloc(12);
  rr.writeUInt16BE(0xc00c, 0);          // the name of the question
  rr.writeUInt16BE(type === 'A' ? 1 : 28, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(ttl, 6);
  rr.writeUInt16BE(data.length, 10);
  return Buffer.concat([rr, data]);
}

function ipv6Bytes(address) {
  const [head, tail = ''] = address.split('::');
  const part = (s) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const groups = [...part(head), ...Array(8 - part(head).length - part(tail).length).fill(0), ...part(tail)];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

export class DnsServer {
  /* names: { 'backend.test': { A: ['127.0.0.1'], AAAA: [], ttl: 300 } } */
  constructor(names) {
    this.names = names;
    this.mode = 'answer';               // or 'servfail', 'silent'
    this.negativeTtl = null;            // seconds: NXDOMAIN carries an SOA
    this.queries = [];                  // { name, type } in arrival order
    this.socket = dgram.createSocket('udp4');
    this.socket.on('message', (msg, peer) => this.#answer(msg, peer));
  }

  async start() {
    await new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(0, '127.0.0.1', resolve);
    });
    this.address = `127.0.0.1:${this.socket.address().port}`;
    return this;
  }

  /* How many questions of type (A, AAAA) about name came. */
  count(name, type) {
    return this.queries.filter((q) => q.name === name && q.type === type).length;
  }

  #answer(msg, peer) {
    const q = readQuestion(msg);
    if (q === null)
      return;
    this.queries.push({ name: q.name, type: q.type });
    if (this.mode === 'silent')
      return;

    const id = msg.readUInt16BE(0);
    const entry = this.names[q.name];
    let rcode = entry ? RCODE.ok : RCODE.nxdomain;
    if (this.mode === 'servfail')
      rcode = RCODE.servfail;
    const addresses = rcode === RCODE.ok ? (entry[q.type] ?? []) : [];
    const soa = rcode === RCODE.nxdomain && this.negativeTtl !== null ? [soaRecord(this.negativeTtl)] : [];
    const reply = Buffer.concat([header(id, rcode, addresses.length, soa.length), q.bytes,
      ...addresses.map((a) => record(q.type, entry.ttl, a)), ...soa]);
    this.socket.send(reply, peer.port, peer.address);
  }

  stop() {
    return new Promise((resolve) => this.socket.close(resolve));
  }
}
