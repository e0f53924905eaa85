#!/usr/bin/env node
// Guildhall test peer: Bluesky's reference did:plc directory (@did-plc/server,
// in-memory) and one or more reference PDSes (@atproto/pds, SQLite), all on
// 127.0.0.1, with a few accounts created. Used by crates/testkit (Rust
// integration tests) and by the load / capture / benchmark scripts here.
//
//   node peer.mjs [--plc-port P] [--pds-ports P1,P2,...]
//                 [--pds-port P --pds-count N] [--accounts N]
//                 [--data-dir DIR] [--out FILE]
//
// Env fallbacks: PLC_PORT, PDS_PORTS, PDS_PORT, PDS_COUNT, ACCOUNTS,
// DATA_DIR, PEER_OUT. --pds-ports wins over --pds-port/--pds-count (the
// Rust side picks each free port itself, so parallel tests never collide).
//
// The data dir is wiped at start (the PLC is in memory, so DIDs from an
// earlier run could not be resolved anyway). When everything is up, the
// peer-info JSON is written to --out (default <data-dir>/peer.json) and
// "READY <path>" is printed on stdout, as the last stdout line. SIGTERM or
// SIGINT closes the servers and exits 0.
import { requireNode22, xrpc } from './lib/common.mjs'

requireNode22('peer.mjs')
// The guard must patch net/dns before the servers are imported.
const guard = await import('./lib/loopback-guard.mjs')
const fs = await import('node:fs/promises')
const http = await import('node:http')
const path = await import('node:path')
const { parseArgs } = await import('node:util')
const { PDS } = await import('@atproto/pds')
const plcServer = await import('@did-plc/server')
const { Secp256k1Keypair } = await import('@atproto/crypto')

const t0 = performance.now()
const env = process.env
const { values: opt } = parseArgs({
  options: {
    'plc-port': { type: 'string', default: env.PLC_PORT ?? '2582' },
    'pds-ports': { type: 'string', default: env.PDS_PORTS ?? '' },
    'pds-port': { type: 'string', default: env.PDS_PORT ?? '2583' },
    'pds-count': { type: 'string', default: env.PDS_COUNT ?? '1' },
    accounts: { type: 'string', default: env.ACCOUNTS ?? '3' },
    'data-dir': { type: 'string', default: env.DATA_DIR ?? './data' },
    out: { type: 'string', default: env.PEER_OUT ?? '' },
  },
})

const int = (name, value, min) => {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`peer.mjs: --${name} must be an integer >= ${min}, got ${JSON.stringify(value)}\n`)
    process.exit(2)
  }
  return n
}
const plcPort = int('plc-port', opt['plc-port'], 1)
const pdsPorts = opt['pds-ports']
  ? opt['pds-ports'].split(',').map((p) => int('pds-ports', p.trim(), 1))
  : Array.from({ length: int('pds-count', opt['pds-count'], 1) }, (_, i) => int('pds-port', opt['pds-port'], 1) + i)
const accountCount = int('accounts', opt.accounts, 0)
const dataDir = path.resolve(opt['data-dir'])
const outFile = path.resolve(opt.out || path.join(dataDir, 'peer.json'))

// Fixed test secrets: loopback-only servers with throw-away data.
const ADMIN_PASSWORD = 'admin-pass'
const JWT_SECRET = 'jwt-secret'
const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy']

await fs.rm(dataDir, { recursive: true, force: true })
await fs.mkdir(dataDir, { recursive: true })

// ---- PLC directory: in-memory, as @atproto/dev-env's TestPlc does ----------
const plc = plcServer.PlcServer.create({ db: plcServer.Database.mock(), port: plcPort })
await plc.start()
const plcUrl = `http://localhost:${plcPort}`

// ---- PDSes ---------------------------------------------------------------------
// With one PDS, handles are <name>.test. With several, each PDS gets its own
// domain (<name>.p<port>.test): a PDS treats every handle under its own
// domains as local, so a shared domain would break cross-PDS resolution.
const handleDomain = (port) => (pdsPorts.length === 1 ? '.test' : `.p${port}.test`)
const pdses = []
for (const port of pdsPorts) {
  const dir = path.join(dataDir, `pds-${port}`)
  await fs.mkdir(dir, { recursive: true })
  const rotationKey = await Secp256k1Keypair.create({ exportable: true })
  const recoveryKey = await Secp256k1Keypair.create()
  const pds = await PDS.fromEnv({
    devMode: true,
    port,
    hostname: 'localhost', // public URL http://localhost:<port>
    serviceDid: `did:web:localhost%3A${port}`,
    serviceName: `guildhall test PDS ${port}`,
    dataDirectory: dir,
    blobstoreDiskLocation: path.join(dir, 'blobs'),
    didPlcUrl: plcUrl,
    recoveryDidKey: recoveryKey.did(),
    plcRotationKeyK256PrivateKeyHex: Buffer.from(await rotationKey.export()).toString('hex'),
    adminPassword: ADMIN_PASSWORD,
    jwtSecret: JWT_SECRET,
    serviceHandleDomains: [handleDomain(port)],
    inviteRequired: false,
    disableSsrfProtection: true, // it would refuse loopback targets
    // Nothing remote: no relay to notify, no app view, no email, no S3/redis.
    crawlers: [],
  })
  await pds.start()
  pdses.push({ pds, port, url: `http://localhost:${port}` })
}

// Handle resolution: *.test handles are answered by asking the local PDSes'
// /.well-known/atproto-did (as dev-env's mock resolvers do); nothing else is
// ever resolved (no DNS, no https). node:http is used because fetch() does
// not let us set the Host header.
const askWellKnown = (port, handle) =>
  new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: '/.well-known/atproto-did', headers: { host: handle }, timeout: 3000 },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => (body += chunk))
        res.on('end', () => resolve(res.statusCode === 200 ? body.trim() : undefined))
      },
    )
    req.on('error', () => resolve(undefined))
    req.on('timeout', () => req.destroy())
  })
for (const { pds } of pdses) {
  pds.ctx.idResolver.handle.resolve = async (handle) => {
    if (!handle.endsWith('.test')) return undefined
    for (const { port } of pdses) {
      const did = await askWellKnown(port, handle)
      if (did?.startsWith('did:')) return did
    }
    return undefined
  }
}
const tServers = performance.now()

// ---- accounts -------------------------------------------------------------------
const getJson = async (url) => {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`GET ${url} -> HTTP ${res.status}`)
  return res.json()
}
const accounts = []
for (let i = 0; i < accountCount; i++) {
  const name = NAMES[i] ?? `user${i}`
  const { url, port } = pdses[i % pdses.length]
  const password = `${name}-pass`
  const email = `${name}@example.test`
  const created = await xrpc(url, 'com.atproto.server.createAccount', {
    body: { handle: `${name}${handleDomain(port)}`, email, password },
  })
  // GET /<did> (the DID document) has the key in the legacy form
  // (EcdsaSecp256k1VerificationKey2019, uncompressed point, no multicodec);
  // GET /<did>/data has it as did:key. Both are recorded so tests can check
  // that our parser accepts the legacy form and maps it to the same key.
  const didEnc = encodeURIComponent(created.did)
  const doc = await getJson(`${plcUrl}/${didEnc}`)
  const data = await getJson(`${plcUrl}/${didEnc}/data`)
  accounts.push({
    name,
    did: created.did,
    handle: created.handle,
    email,
    password,
    pds: url,
    accessJwt: created.accessJwt,
    refreshJwt: created.refreshJwt,
    signingKey: data.verificationMethods?.atproto ?? null,
    didDocVerificationMethod: doc.verificationMethod?.find((m) => m.id.endsWith('#atproto')) ?? null,
  })
}
const tReady = performance.now()

const pkgVersion = async (name) =>
  (await import(`${name}/package.json`, { with: { type: 'json' } })).default.version
const info = {
  startedAt: new Date().toISOString(),
  pid: process.pid,
  node: process.version,
  versions: {
    '@atproto/pds': await pkgVersion('@atproto/pds'),
    '@did-plc/server': await pkgVersion('@did-plc/server'),
  },
  plc: { url: plcUrl, port: plcPort },
  pdses: pdses.map(({ url, port, pds }) => ({
    url,
    port,
    did: pds.ctx.cfg.service.did,
    handleDomain: handleDomain(port),
    firehose: `ws://localhost:${port}/xrpc/com.atproto.sync.subscribeRepos`,
  })),
  adminPassword: ADMIN_PASSWORD,
  accounts,
  timingsMs: {
    serversUp: Math.round(tServers - t0),
    accountsCreated: Math.round(tReady - tServers),
    total: Math.round(tReady - t0),
    // includes loading Node and the PDS modules (about 1.3 s on an idle machine)
    sinceProcessStart: Math.round(performance.now()),
  },
  dataDir,
}
// Write to a temp name and rename, so a reader never sees half a file.
await fs.writeFile(`${outFile}.tmp`, JSON.stringify(info, null, 2))
await fs.rename(`${outFile}.tmp`, outFile)
process.stderr.write(`peer: READY ${info.timingsMs.sinceProcessStart} ms after process start; up in ${info.timingsMs.total} ms (servers ${info.timingsMs.serversUp} ms, accounts ${info.timingsMs.accountsCreated} ms)\n`)
process.stdout.write(`READY ${outFile}\n`)

// ---- stay up until told to stop --------------------------------------------------
let closing = false
async function shutdown(signal) {
  if (closing) return
  closing = true
  process.stderr.write(`peer: ${signal}, closing\n`)
  for (const { pds } of pdses) await pds.destroy().catch((e) => process.stderr.write(`pds destroy: ${e}\n`))
  await plc.destroy().catch((e) => process.stderr.write(`plc destroy: ${e}\n`))
  if (guard.blocked.length) process.stderr.write(`peer: loopback guard blocked ${guard.blocked.length} attempt(s)\n`)
  process.exit(0)
}
process.on('SIGINT', () => shutdown('SIGINT'))
process.on('SIGTERM', () => shutdown('SIGTERM'))
// If the parent (the Rust test) dies without killing us, stdin closes when
// it is a pipe: stop then too, so no orphan PDS is left behind.
if (process.env.GUILDHALL_PEER_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => shutdown('stdin EOF'))
  process.stdin.on('error', () => shutdown('stdin error'))
  process.stdin.resume()
}
