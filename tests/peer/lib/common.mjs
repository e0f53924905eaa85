// Small helpers shared by the peer scripts: the Node version check, a plain
// XRPC client over fetch, the peer-info file, and the frames-file format.
import fs from 'node:fs'

/**
 * The reference PDS needs Node >= 22 (undici 8 uses zlib zstd). The machine
 * and CI may only have Node 20, so every script runs on the Node 22 shipped
 * in node_modules (./node_modules/.bin/node); fail with a hint otherwise.
 */
export function requireNode22(script) {
  const major = Number(process.versions.node.split('.')[0])
  if (major < 22) {
    process.stderr.write(
      `${script} needs Node >= 22 (this is ${process.version}). ` +
        `Run tests/peer/install.sh, then tests/peer/node_modules/.bin/node ${script}\n`,
    )
    process.exit(2)
  }
}

/** An XRPC error with the HTTP status and the parsed body kept. */
export class XrpcError extends Error {
  constructor(nsid, status, body) {
    super(`${nsid} -> HTTP ${status} ${typeof body === 'string' ? body : JSON.stringify(body)}`)
    this.status = status
    this.body = body
  }
}

/**
 * Calls an XRPC method. With `body` it is a procedure (POST JSON), without
 * it a query (GET with `query` params). Returns parsed JSON, or raw bytes
 * when `raw` is set (sync.getRepo).
 */
export async function xrpc(base, nsid, { body, token, query, raw = false } = {}) {
  const url = new URL(`/xrpc/${nsid}`, base)
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null) url.searchParams.set(k, String(v))
  }
  const headers = {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (token) headers.authorization = `Bearer ${token}`
  const res = await fetch(url, {
    method: body !== undefined ? 'POST' : 'GET',
    headers,
    body: body !== undefined ? JSON.stringify(body) : undefined,
  })
  if (raw && res.ok) return new Uint8Array(await res.arrayBuffer())
  const text = await res.text()
  let parsed = text
  try {
    parsed = text ? JSON.parse(text) : {}
  } catch {
    // keep the text: error pages are not always JSON
  }
  if (!res.ok) throw new XrpcError(nsid, res.status, parsed)
  return parsed
}

/** Reads the JSON file that peer.mjs writes. */
export function readPeerInfo(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'))
}

/** Fresh access tokens: the ones in the peer file expire after a while. */
export async function freshSessions(accounts) {
  for (const a of accounts) {
    const s = await xrpc(a.pds, 'com.atproto.server.createSession', {
      body: { identifier: a.did, password: a.password },
    })
    a.accessJwt = s.accessJwt
    a.refreshJwt = s.refreshJwt
  }
  return accounts
}

/**
 * Frames file: every firehose message as <u32 big-endian length><bytes>,
 * back to back. Simple to read from Rust and from here, and appendable.
 */
export class FramesWriter {
  constructor(file) {
    this.fd = fs.openSync(file, 'w')
    this.frames = 0
    this.bytes = 0
  }
  write(bytes) {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(bytes.byteLength)
    fs.writeSync(this.fd, len)
    fs.writeSync(this.fd, bytes)
    this.frames++
    this.bytes += 4 + bytes.byteLength
  }
  close() {
    fs.closeSync(this.fd)
  }
}

/** Yields each frame (a Uint8Array view) of a frames file. */
export function* readFrames(file) {
  const buf = fs.readFileSync(file)
  let off = 0
  while (off + 4 <= buf.length) {
    const len = buf.readUInt32BE(off)
    off += 4
    if (off + len > buf.length) throw new Error(`${file}: truncated frame at byte ${off - 4}`)
    yield new Uint8Array(buf.buffer, buf.byteOffset + off, len)
    off += len
  }
  if (off !== buf.length) throw new Error(`${file}: ${buf.length - off} trailing byte(s)`)
}

/** Runs `worker(i)` for i in [0, count) with at most `concurrency` in flight. */
export async function runPool(count, concurrency, worker) {
  let next = 0
  const lanes = Array.from({ length: Math.max(1, concurrency) }, async () => {
    while (next < count) {
      const i = next++
      await worker(i)
    }
  })
  await Promise.all(lanes)
}

/** p-th percentile (0..100) of a list of numbers, rounded to 0.01. */
export function percentile(values, p) {
  if (!values.length) return null
  const s = [...values].sort((a, b) => a - b)
  const v = s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
  return Number(v.toFixed(2))
}
