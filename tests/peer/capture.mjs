#!/usr/bin/env node
// Records a PDS firehose (com.atproto.sync.subscribeRepos) to a frames file:
// every binary WebSocket message exactly as received, stored as
// <u32 big-endian length><bytes>. Such files feed the Rust ingestion tests
// and benchmarks and bench-verify.mjs.
//
//   node capture.mjs --out FILE [--url ws://127.0.0.1:P/xrpc/com.atproto.sync.subscribeRepos]
//                    [--peer peer.json [--pds 0]] [--cursor N]
//                    [--max N] [--idle-ms 3000]
//
// Either --url, or --peer (a peer.mjs info file) and the index of the PDS.
// Prints "CAPTURING <url>" on stdout once connected, then a JSON summary
// when it stops: after --max frames, after --idle-ms with no frame
// (0 = never), when the server closes, or on SIGINT/SIGTERM.
import { FramesWriter, readPeerInfo, requireNode22 } from './lib/common.mjs'

requireNode22('capture.mjs')
await import('./lib/loopback-guard.mjs')
const { parseArgs } = await import('node:util')

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    peer: { type: 'string' },
    pds: { type: 'string', default: '0' },
    cursor: { type: 'string' },
    out: { type: 'string' },
    max: { type: 'string', default: '0' },
    'idle-ms': { type: 'string', default: '3000' },
  },
})
if (!opt.out || (!opt.url && !opt.peer)) {
  process.stderr.write('usage: capture.mjs --out FILE (--url WS_URL | --peer peer.json [--pds I]) [--cursor N] [--max N] [--idle-ms MS]\n')
  process.exit(2)
}
const url = new URL(opt.url ?? readPeerInfo(opt.peer).pdses[Number(opt.pds)].firehose)
if (opt.cursor !== undefined) url.searchParams.set('cursor', opt.cursor)
const max = Number(opt.max)
const idleMs = Number(opt['idle-ms'])

const out = new FramesWriter(opt.out)
const t0 = performance.now()
let tFirst = null
let idleTimer = null
let finished = false

function finish(reason, code = 0) {
  if (finished) return
  finished = true
  clearTimeout(idleTimer)
  try {
    ws.close()
  } catch {
    // already closed
  }
  out.close()
  const secs = (performance.now() - (tFirst ?? t0)) / 1000
  process.stdout.write(
    JSON.stringify({ stopped: reason, url: url.toString(), frames: out.frames, bytes: out.bytes, out: opt.out, seconds: Number(secs.toFixed(3)) }) + '\n',
  )
  process.exit(code)
}
function armIdle() {
  if (!idleMs) return
  clearTimeout(idleTimer)
  idleTimer = setTimeout(() => finish('idle'), idleMs)
}

// Node 22 has a WHATWG WebSocket built in.
const ws = new WebSocket(url)
ws.binaryType = 'arraybuffer'
ws.onopen = () => {
  process.stdout.write(`CAPTURING ${url}\n`)
  armIdle()
}
ws.onmessage = (ev) => {
  if (typeof ev.data === 'string') {
    process.stderr.write(`capture: unexpected text frame ${ev.data.slice(0, 200)}\n`)
    return
  }
  tFirst ??= performance.now()
  out.write(new Uint8Array(ev.data))
  if (max && out.frames >= max) return finish('max')
  armIdle()
}
ws.onerror = (ev) => process.stderr.write(`capture: websocket error ${ev.message ?? ''}\n`)
ws.onclose = (ev) => finish(`closed ${ev.code} ${ev.reason}`.trim(), out.frames ? 0 : 1)
process.on('SIGINT', () => finish('SIGINT'))
process.on('SIGTERM', () => finish('SIGTERM'))
