// A real redis-server for the tests: started on a free loopback port with
// persistence off, and able to be killed, paused (SIGSTOP), resumed
// (SIGCONT) and restarted on the same port. A small RESP client lets tests
// look at what the gateway stored.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';

import { freePort, makeTempDir, waitFor } from './harness.mjs';

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN || 'redis-server';

/* How long redis-server may take to reply to PING after a start; a bound on
 * waiting for a broken install, not a performance threshold. */
const START_DEADLINE_MS = 15000;

const servers = new Set();

process.on('exit', () => {
  for (const server of servers)
    server.child?.kill('SIGKILL');
});

/* Encode one command as a RESP array of bulk strings. */
function encodeCommand(args) {
  const parts = [`*${args.length}\r\n`];
  for (const arg of args) {
    const bytes = Buffer.from(String(arg));
    parts.push(`$${bytes.length}\r\n`, bytes, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
}

/* Parse one RESP reply from buf at offset. Returns {value, end}, or null
 * when buf does not hold the whole reply yet. Errors become Error values. */
function parseReply(buf, offset = 0) {
  const lineEnd = buf.indexOf('\r\n', offset);
  if (lineEnd < 0)
    return null;
  const type = String.fromCharCode(buf[offset]);
  const line = buf.toString('utf8', offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
  case '+':
    return { value: line, end: next };
  case '-':
    return { value: new Error(line), end: next };
  case ':':
    return { value: Number(line), end: next };
  case '$': {
    const len = Number(line);
    if (len < 0)
      return { value: null, end: next };
    if (buf.length < next + len + 2)
      return null;
    return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
  }
  case '*': {
    const count = Number(line);
    const values = [];
    let pos = next;
    for (let i = 0; i < count; i++) {
      const item = parseReply(buf, pos);
      if (item === null)
        return null;
      values.push(item.value);
      pos = item.end;
    }
    return { value: count < 0 ? null : values, end: pos };
  }
  default:
    throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}

/**
 * Send one command to the Redis at port on a new connection and resolve to
 * its reply (an Error for an error reply). With a password, AUTH goes
 * first, and its error, if any, is the result. Rejects when the connection
 * fails or no reply comes within timeoutMs.
 */
export function redisCommand(port, args, { timeoutMs = 5000, password = null } = {}) {
  const commands = password === null ? [args] : [['AUTH', password], args];
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis ${args[0]} on port ${port}: no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(Buffer.concat(commands.map(encodeCommand))));
    socket.on('data', (data) => {
      buf = Buffer.concat([buf, data]);
      const replies = [];
      for (let offset = 0; replies.length < commands.length;) {
        const reply = parseReply(buf, offset);
        if (reply === null)
          return;
        replies.push(reply.value);
        offset = reply.end;
      }
      clearTimeout(timer);
      socket.end();
      resolve(replies.find((value) => value instanceof Error) ?? replies[replies.length - 1]);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

class RedisServer {
  constructor(port, dir) {
    this.port = port;
    this.dir = dir;
    this.child = null;
    this.stderr = [];
    this.url = `redis://127.0.0.1:${port}/0`;
    this.password = null;               /* requirepass, once set */
  }

  async start() {
    this.password = null;
    const argv = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--dir', this.dir, '--loglevel', 'warning'];
    const child = spawn(REDIS_SERVER_BIN, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    child.stderr.setEncoding('utf8').on('data', (text) => this.stderr.push(text));
    const failed = new Promise((_, reject) => {
      child.once('error', (err) => reject(new Error(`cannot start ${REDIS_SERVER_BIN}: ${err.message}`)));
      child.once('exit', (code, signal) => reject(new Error(
        `redis-server exited during startup (code ${code}, signal ${signal}): ${this.stderr.join('')}`)));
    });
    failed.catch(() => {});
    await Promise.race([failed, waitFor(async () => (await this.command('PING')) === 'PONG',
      { timeoutMs: START_DEADLINE_MS, message: `redis-server PONG on port ${this.port}` })]);
  }

  command(...args) {
    return redisCommand(this.port, args, { password: this.password });
  }

  /* Require this password of new connections ('' for none); connections
   * already authenticated stay so. */
  async requirePassword(password) {
    const reply = await this.command('CONFIG', 'SET', 'requirepass', password);
    if (reply instanceof Error)
      throw reply;
    this.password = password === '' ? null : password;
  }

  /* The number of keys in each database that has any, as {db0: N, ...}. */
  async keyspace() {
    const info = await this.command('INFO', 'keyspace');
    return Object.fromEntries([...info.matchAll(/^(db\d+):keys=(\d+)/gm)].map((m) => [m[1], Number(m[2])]));
  }

  /* The keys the gateway stored. */
  cacheKeys() {
    return this.command('KEYS', 'tollgate:cache:*');
  }

  /* SIGKILL, as a crash would; resolves once the process is gone. */
  async kill() {
    if (this.child === null || this.child.exitCode !== null || this.child.signalCode !== null)
      return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
  }

  /* Freeze the server: connections stay open, nothing is answered. */
  pause() {
    this.child.kill('SIGSTOP');
  }

  resume() {
    this.child.kill('SIGCONT');
  }

  /* Start again on the same port, empty. */
  async restart() {
    await this.kill();
    await this.start();
  }

  async stop() {
    servers.delete(this);
    if (this.child !== null && this.child.signalCode === null && this.child.exitCode === null)
      this.resume();
    await this.kill();
  }
}

/* Start redis-server on a free loopback port, persistence off. */
export async function startRedis() {
  const server = new RedisServer(await freePort(), makeTempDir('tollgate-redis-'));
  servers.add(server);
  await server.start();
  return server;
}

/* Stop every server startRedis() started; for an `after` hook. */
export async function stopAllRedis() {
  await Promise.all([...servers].map((s) => s.stop()));
}
