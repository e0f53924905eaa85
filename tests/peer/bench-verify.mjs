#!/usr/bin/env node
// Baseline for the ingestion benchmark: how fast does Bluesky's reference
// TypeScript consumer (@atproto/sync) authenticate a recorded firehose?
// Every #commit goes through its authenticated path: commit signature
// checked against the repo's #atproto key, and every op proven against the
// signed MST root (verifyProofs in @atproto/repo), records decoded.
//
//   node bench-verify.mjs --frames FILE (--keys peer.json|map.json | --plc URL | --peer peer.json)
//                         [--mode firehose|direct] [--runner] [--repeat 1]
//
// Modes:
//   firehose (default)  The frames are served by a loopback WebSocket server
//                       and consumed by @atproto/sync's Firehose class, i.e.
//                       the full reference path: WebSocket, frame decoding,
//                       lexicon validation of the event, authentication,
//                       record decoding, handleEvent. --runner adds its
//                       MemoryRunner (parallel across repos, in order per
//                       repo); without it events are handled one at a time.
//   direct              The same per-event steps called in a loop without the
//                       WebSocket: Frame.fromBytes, lexicon validation,
//                       parseCommitAuthenticated.
// Identity: --keys gives the DID -> did:key map (a peer.mjs info file, or a
// JSON object {did: "did:key:..."}); --plc resolves DID documents from a
// running PLC through @atproto/identity with a memory cache (each DID is
// fetched once, as a long-running consumer would); --peer FILE uses the PLC
// of that running peer.
//
// Prints JSON: commits, ops verified/rejected, seconds, commits/s, ops/s.
// #identity, #account and #sync frames are skipped: the benchmark is about
// commit authentication.
import { readFrames, requireNode22 } from './lib/common.mjs'

requireNode22('bench-verify.mjs')
await import('./lib/loopback-guard.mjs')
const fs = await import('node:fs')
const { parseArgs } = await import('node:util')
const { Firehose, MemoryRunner, parseCommitAuthenticated } = await import('@atproto/sync')
const { IdResolver, MemoryCache } = await import('@atproto/identity')
const { Frame } = await import('@atproto/xrpc-server')
const { WebSocketServer } = await import('ws')
// The event lexicons are internal to @atproto/sync (its package exports only
// "."), so they are loaded by file path, the same module the Firehose uses.
const { com } = await import(new URL('./node_modules/@atproto/sync/dist/lexicons/index.js', import.meta.url).href)

const { values: opt } = parseArgs({
  options: {
    frames: { type: 'string' },
    keys: { type: 'string' },
    plc: { type: 'string' },
    peer: { type: 'string' },
    mode: { type: 'string', default: 'firehose' },
    runner: { type: 'boolean', default: false },
    repeat: { type: 'string', default: '1' },
  },
})
if (opt.peer && !opt.plc) opt.plc = JSON.parse(fs.readFileSync(opt.peer, 'utf8')).plc.url
if (!opt.frames || (!opt.keys && !opt.plc) || !['firehose', 'direct'].includes(opt.mode)) {
  process.stderr.write('usage: bench-verify.mjs --frames FILE (--keys FILE | --plc URL | --peer FILE) [--mode firehose|direct] [--runner] [--repeat N]\n')
  process.exit(2)
}

// ---- identity -----------------------------------------------------------------------
function idResolverFromKeys(file) {
  const json = JSON.parse(fs.readFileSync(file, 'utf8'))
  const map = new Map(
    Array.isArray(json.accounts) ? json.accounts.map((a) => [a.did, a.signingKey]) : Object.entries(json),
  )
  // Only the one method the commit path calls is needed.
  return {
    did: {
      resolveAtprotoKey: async (did) => {
        const key = map.get(did)
        if (!key) throw new Error(`no key for ${did} in ${file}`)
        return key
      },
    },
  }
}
const idResolver = opt.keys
  ? idResolverFromKeys(opt.keys)
  : // Its default fetch refuses http: and custom ports (SSRF protection);
    // the PLC here is http://localhost:<port>, and the loopback guard
    // already keeps every request on this machine.
    new IdResolver({ plcUrl: opt.plc, didCache: new MemoryCache(), fetch: globalThis.fetch })

// ---- the recording ---------------------------------------------------------------------
const frames = [...readFrames(opt.frames)].map((f) => Buffer.from(f))
let commits = 0
let expectedOps = 0
let lastCommitSeq = -1
const commitSeqs = new Set()
for (const f of frames) {
  const frame = Frame.fromBytes(f)
  if (frame.isMessage() && frame.type === '#commit') {
    commits++
    expectedOps += frame.body.ops.length
    commitSeqs.add(frame.body.seq)
    lastCommitSeq = Math.max(lastCommitSeq, frame.body.seq)
  }
}
if (!commits) {
  process.stderr.write(`${opt.frames}: no #commit frames\n`)
  process.exit(1)
}

// ---- modes -----------------------------------------------------------------------------
async function runDirect() {
  let events = 0
  let failures = 0
  const t0 = performance.now()
  for (const bytes of frames) {
    // As Subscription does: decode, tag with the lexicon $type, validate.
    const frame = Frame.fromBytes(bytes)
    if (!frame.isMessage() || frame.type !== '#commit') continue
    const typed = { ...frame.body, $type: `com.atproto.sync.subscribeRepos${frame.type}` }
    const parsed = com.atproto.sync.subscribeRepos.$message.safeParse(typed)
    if (!parsed.success) {
      failures++
      continue
    }
    try {
      events += (await parseCommitAuthenticated(idResolver, parsed.value, null)).length
    } catch {
      failures++
    }
  }
  return { seconds: (performance.now() - t0) / 1000, events, failures }
}

async function runFirehose() {
  // Serve the recording to one subscriber, as fast as it takes it.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((r) => wss.once('listening', r))
  let t0 = null
  wss.on('connection', (sock) => {
    t0 ??= performance.now()
    for (const f of frames) sock.send(f)
  })
  const seen = new Set()
  let events = 0
  let failures = 0
  let resolveDone
  const done = new Promise((r) => (resolveDone = r))
  const note = (seq) => {
    if (!commitSeqs.has(seq)) return
    seen.add(seq)
    if (seen.size === commitSeqs.size) resolveDone()
  }
  const firehose = new Firehose({
    service: `ws://127.0.0.1:${wss.address().port}`,
    idResolver,
    runner: opt.runner ? new MemoryRunner({ setCursor: async () => {} }) : undefined,
    excludeIdentity: true,
    excludeAccount: true,
    excludeSync: true,
    handleEvent: async (evt) => {
      events++
      note(evt.seq)
    },
    onError: (err) => {
      failures++
      if (failures <= 5) process.stderr.write(`bench-verify: ${err.message}: ${err.cause?.message ?? ''}\n`)
      const seq = err.event?.seq
      if (seq !== undefined) note(seq)
    },
  })
  // Commits with no ops (account genesis) yield no event: count them now.
  for (const f of frames) {
    const frame = Frame.fromBytes(f)
    if (frame.isMessage() && frame.type === '#commit' && frame.body.ops.length === 0) note(frame.body.seq)
  }
  // Commits whose every op fails verification are dropped without an event
  // or an error; a timeout keeps such a run from hanging.
  const timer = setTimeout(() => resolveDone('timeout'), 600_000)
  firehose.start()
  const outcome = await done
  const seconds = (performance.now() - (t0 ?? performance.now())) / 1000
  clearTimeout(timer)
  await firehose.destroy()
  wss.close()
  return { seconds, events, failures, timedOut: outcome === 'timeout', commitsSeen: seen.size }
}

const runs = []
for (let r = 0; r < Number(opt.repeat); r++) {
  runs.push(opt.mode === 'direct' ? await runDirect() : await runFirehose())
}
const best = runs.reduce((a, b) => (b.seconds < a.seconds ? b : a))
const pkg = JSON.parse(fs.readFileSync(new URL('./node_modules/@atproto/sync/package.json', import.meta.url), 'utf8'))
process.stdout.write(
  JSON.stringify(
    {
      verifier: `@atproto/sync ${pkg.version}`,
      mode: opt.mode + (opt.mode === 'firehose' && opt.runner ? '+runner' : ''),
      identity: opt.keys ? 'keys' : 'plc',
      frames: frames.length,
      commits,
      ops: expectedOps,
      opsVerified: best.events,
      failures: best.failures,
      seconds: Number(best.seconds.toFixed(3)),
      commitsPerSecond: Number((commits / best.seconds).toFixed(1)),
      opsPerSecond: Number((best.events / best.seconds).toFixed(1)),
      runs: runs.map((r) => Number(r.seconds.toFixed(3))),
      ...(best.timedOut ? { timedOut: true, commitsSeen: best.commitsSeen } : {}),
    },
    null,
    2,
  ) + '\n',
)
process.exit(best.failures || best.timedOut || best.events !== expectedOps ? 1 : 0)
