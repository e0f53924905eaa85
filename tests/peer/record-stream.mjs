#!/usr/bin/env node
// Produces a realistic firehose recording for the ingestion benchmark: while
// a write load runs against a running peer (see load.mjs), every PDS's
// firehose is captured from cursor 0 (so the file also holds the account
// creation events) into a frames file, <u32 BE length><frame bytes> each.
//
//   node record-stream.mjs --peer FILE --out FRAMES [--count 10000]
//                          [--concurrency 8] [--mix mixed] [--client fetch|api]
//                          [--timeout-s 60] [--keys-out FILE]
//
// Also writes FILE (default FRAMES.keys.json): {did: "did:key:..."} of every
// account, so the recording can be verified later without the peer (the
// PLC is in memory and gone once the peer stops): bench-verify --keys FILE.
//
// With several PDSes, PDS i > 0 is written to FRAMES.pds<i>. The capture
// stops once every account's latest commit (com.atproto.sync.getLatestCommit)
// has been seen on the firehose, so the recording is complete, not cut off
// by a timer. Prints a JSON summary (load throughput, frames, bytes, time).
import { FramesWriter, readPeerInfo, requireNode22, xrpc } from './lib/common.mjs'

requireNode22('record-stream.mjs')
await import('./lib/loopback-guard.mjs')
const { parseArgs } = await import('node:util')
const { decodeAll } = await import('@atproto/lex-cbor')
const { runLoad } = await import('./lib/load.mjs')

const { values: opt } = parseArgs({
  options: {
    peer: { type: 'string', default: './data/peer.json' },
    out: { type: 'string' },
    count: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '8' },
    mix: { type: 'string', default: 'mixed' },
    client: { type: 'string', default: 'fetch' },
    seed: { type: 'string', default: '1' },
    'timeout-s': { type: 'string', default: '60' },
    'keys-out': { type: 'string' },
  },
})
if (!opt.out) {
  process.stderr.write('usage: record-stream.mjs --peer FILE --out FRAMES [--count N] [--concurrency C] [--mix M]\n')
  process.exit(2)
}
const peer = readPeerInfo(opt.peer)
const keysOut = opt['keys-out'] ?? `${opt.out}.keys.json`
const { writeFileSync } = await import('node:fs')
writeFileSync(keysOut, JSON.stringify(Object.fromEntries(peer.accounts.map((a) => [a.did, a.signingKey])), null, 2))
const t0 = performance.now()

// ---- one capture per PDS -----------------------------------------------------------
const lastRevSeen = new Map() // did -> rev of the newest #commit/#sync seen
const byType = {}
const captures = peer.pdses.map((pds, i) => {
  const file = i === 0 ? opt.out : `${opt.out}.pds${i}`
  const writer = new FramesWriter(file)
  const url = new URL(pds.firehose)
  url.searchParams.set('cursor', '0')
  const ws = new WebSocket(url)
  ws.binaryType = 'arraybuffer'
  const opened = new Promise((resolve, reject) => {
    ws.onopen = resolve
    ws.onerror = (ev) => reject(new Error(`firehose ${url}: ${ev.message ?? 'error'}`))
  })
  const closed = new Promise((resolve) => {
    ws.onclose = (ev) => resolve(ev)
  })
  ws.onmessage = (ev) => {
    const bytes = new Uint8Array(ev.data)
    writer.write(bytes)
    const [header, body] = decodeAll(bytes)
    const t = header.t ?? `op${header.op}`
    byType[t] = (byType[t] ?? 0) + 1
    if (t === '#commit') lastRevSeen.set(body.repo, body.rev)
    else if (t === '#sync') lastRevSeen.set(body.did, body.rev)
  }
  return { file, writer, ws, opened, closed }
})
await Promise.all(captures.map((c) => c.opened))

// ---- the load --------------------------------------------------------------------
const load = await runLoad({
  accounts: peer.accounts,
  count: Number(opt.count),
  concurrency: Number(opt.concurrency),
  mix: opt.mix,
  client: opt.client,
  seed: Number(opt.seed),
})

// ---- wait until the firehose has caught up with every repo -------------------------
const want = new Map()
for (const a of peer.accounts) {
  const latest = await xrpc(a.pds, 'com.atproto.sync.getLatestCommit', { query: { did: a.did } })
  want.set(a.did, latest.rev)
}
const deadline = performance.now() + Number(opt['timeout-s']) * 1000
// Revs are TIDs: base32-sortable, so string comparison orders them.
const caughtUp = () => [...want].every(([did, rev]) => (lastRevSeen.get(did) ?? '') >= rev)
while (!caughtUp()) {
  if (performance.now() > deadline) {
    const missing = [...want].filter(([did, rev]) => (lastRevSeen.get(did) ?? '') < rev).map(([did]) => did)
    process.stderr.write(`record-stream: firehose did not catch up within ${opt['timeout-s']} s for ${missing.join(', ')}\n`)
    process.exit(1)
  }
  await new Promise((r) => setTimeout(r, 50))
}
for (const c of captures) {
  c.ws.close()
  await c.closed
  c.writer.close()
}
const seconds = (performance.now() - t0) / 1000
process.stdout.write(
  JSON.stringify(
    {
      files: captures.map((c) => ({ file: c.file, frames: c.writer.frames, bytes: c.writer.bytes })),
      keys: keysOut,
      framesByType: byType,
      seconds: Number(seconds.toFixed(3)),
      load,
    },
    null,
    2,
  ) + '\n',
)
process.exit(load.errors ? 1 : 0)
