// The write-load engine behind load.mjs and record-stream.mjs: a mix of
// createRecord / putRecord / deleteRecord / applyWrites on dev.guildhall.*
// collections across several accounts, with a bounded number in flight.
//
// Two client implementations are available, so our indexer sees writes made
// by more than one client stack: "fetch" (plain XRPC over fetch) and "api"
// (Bluesky's @atproto/api AtpAgent).
import { freshSessions, percentile, runPool, xrpc } from './common.mjs'
import { ENDORSEMENT, OPERATOR, SERVICE, endorsementRecord, operatorRecord, serviceRecord } from './records.mjs'

export const MIX_PRESETS = {
  create: 'create=100',
  mixed: 'create=60,put=15,delete=10,apply=15',
}

/** Parses "create=60,put=15,..." (or a preset name) into cumulative weights. */
export function parseMix(spec) {
  const text = MIX_PRESETS[spec] ?? spec
  const parts = text.split(',').map((p) => p.trim()).filter(Boolean)
  const table = []
  let total = 0
  for (const part of parts) {
    const [kind, weight] = part.split('=')
    if (!['create', 'put', 'delete', 'apply'].includes(kind) || !(Number(weight) >= 0)) {
      throw new Error(`bad --mix entry ${JSON.stringify(part)} (want create|put|delete|apply=WEIGHT)`)
    }
    total += Number(weight)
    table.push([kind, total])
  }
  if (total <= 0) throw new Error(`--mix ${JSON.stringify(spec)} has no weight`)
  return { table, total }
}

// mulberry32: a tiny seeded PRNG, so the op sequence of a run is repeatable.
function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A client that can call repo procedures for one account. */
async function makeClient(kind, account) {
  if (kind === 'fetch') {
    return {
      call: (nsid, body) => xrpc(account.pds, nsid, { body, token: account.accessJwt }),
    }
  }
  if (kind === 'api') {
    const { AtpAgent } = await import('@atproto/api')
    const agent = new AtpAgent({ service: account.pds })
    await agent.login({ identifier: account.did, password: account.password })
    const repo = agent.com.atproto.repo
    const methods = {
      'com.atproto.repo.createRecord': (b) => repo.createRecord(b),
      'com.atproto.repo.putRecord': (b) => repo.putRecord(b),
      'com.atproto.repo.deleteRecord': (b) => repo.deleteRecord(b),
      'com.atproto.repo.applyWrites': (b) => repo.applyWrites(b),
    }
    return {
      call: async (nsid, body) => (await methods[nsid](body)).data,
    }
  }
  throw new Error(`unknown client ${JSON.stringify(kind)} (want fetch|api)`)
}

/**
 * Runs `count` operations. Returns a JSON-able summary: operations and
 * record writes done (an applyWrites batch holds several writes), per-kind
 * latency percentiles, errors, and throughput.
 */
export async function runLoad({ accounts, count, concurrency = 8, mix = 'mixed', client = 'fetch', seed = 1, onOp }) {
  if (!accounts.length) throw new Error('no accounts to write to')
  const { table, total } = parseMix(mix)
  const rand = prng(seed)
  const run = Date.now().toString(36)
  await freshSessions(accounts)
  const states = []
  for (const a of accounts) {
    states.push({
      account: a,
      client: await makeClient(client, a),
      services: [], // {rkey, version} of live services this run wrote
      endorsements: [], // rkeys of live endorsements
    })
  }
  const others = (acct) => accounts.filter((o) => o.did !== acct.did).map((o) => o.did)

  const latencies = { create: [], put: [], delete: [], apply: [] }
  const opsDone = { create: 0, put: 0, delete: 0, apply: 0 }
  const errors = []
  let writes = 0

  const chooseKind = () => {
    const x = rand() * total
    return table.find(([, upTo]) => x < upTo)[0]
  }

  const newService = (st, i) => ({ rkey: `svc-${run}-${i}`, version: 0 })
  const endorsementSubject = (st, i) => {
    const pool = others(st.account)
    return pool.length ? pool[i % pool.length] : st.account.did
  }
  const repoOf = (st) => st.account.did

  async function create(st, i) {
    if (i % 5 < 2) {
      const svc = newService(st, i)
      await st.client.call('com.atproto.repo.createRecord', {
        repo: repoOf(st),
        collection: SERVICE,
        rkey: svc.rkey,
        record: serviceRecord(i, { handle: st.account.handle }),
      })
      st.services.push(svc)
    } else {
      const res = await st.client.call('com.atproto.repo.createRecord', {
        repo: repoOf(st),
        collection: ENDORSEMENT,
        record: endorsementRecord(i, endorsementSubject(st, i)),
      })
      st.endorsements.push(res.uri.split('/').pop())
    }
    return 1
  }

  async function put(st, i) {
    if (i % 3 === 0) {
      await st.client.call('com.atproto.repo.putRecord', {
        repo: repoOf(st),
        collection: OPERATOR,
        rkey: 'self',
        record: operatorRecord(i, st.account.handle),
      })
      return 1
    }
    // Take the service out of the pool while it is being updated, so a
    // concurrent delete cannot remove it underneath us.
    const svc = st.services.shift() ?? newService(st, i)
    svc.version++
    try {
      await st.client.call('com.atproto.repo.putRecord', {
        repo: repoOf(st),
        collection: SERVICE,
        rkey: svc.rkey,
        record: serviceRecord(i, { version: svc.version, handle: st.account.handle }),
      })
    } finally {
      st.services.push(svc)
    }
    return 1
  }

  async function del(st, i) {
    const rkey = st.endorsements.shift()
    if (rkey !== undefined) {
      await st.client.call('com.atproto.repo.deleteRecord', { repo: repoOf(st), collection: ENDORSEMENT, rkey })
      return 1
    }
    const svc = st.services.shift()
    if (svc) {
      await st.client.call('com.atproto.repo.deleteRecord', { repo: repoOf(st), collection: SERVICE, rkey: svc.rkey })
      return 1
    }
    return create(st, i) // nothing to delete yet
  }

  async function apply(st, i) {
    const w = []
    const created = []
    for (let k = 0; k < 2; k++) {
      // Client-chosen TID-like keys are not needed: the PDS assigns a TID
      // when rkey is omitted, and returns it in results.
      w.push({ $type: 'com.atproto.repo.applyWrites#create', collection: ENDORSEMENT, value: endorsementRecord(i + k, endorsementSubject(st, i + k)) })
      created.push(w.length - 1)
    }
    const svc = st.services.shift()
    if (svc) {
      svc.version++
      w.push({ $type: 'com.atproto.repo.applyWrites#update', collection: SERVICE, rkey: svc.rkey, value: serviceRecord(i, { version: svc.version, handle: st.account.handle }) })
    }
    const gone = st.endorsements.shift()
    if (gone !== undefined) w.push({ $type: 'com.atproto.repo.applyWrites#delete', collection: ENDORSEMENT, rkey: gone })
    try {
      const res = await st.client.call('com.atproto.repo.applyWrites', { repo: repoOf(st), writes: w })
      for (const idx of created) {
        const uri = res.results?.[idx]?.uri
        if (uri) st.endorsements.push(uri.split('/').pop())
      }
    } finally {
      if (svc) st.services.push(svc)
    }
    return w.length
  }

  const impl = { create, put, delete: del, apply }
  const t0 = performance.now()
  await runPool(count, concurrency, async (i) => {
    const st = states[i % states.length]
    const kind = chooseKind()
    const t = performance.now()
    try {
      const n = await impl[kind](st, i)
      writes += n
      opsDone[kind]++
      latencies[kind].push(performance.now() - t)
      onOp?.(i, kind, n)
    } catch (err) {
      errors.push({ i, kind, message: String(err.message ?? err).slice(0, 300) })
    }
  })
  const seconds = (performance.now() - t0) / 1000
  const ops = Object.values(opsDone).reduce((a, b) => a + b, 0)
  return {
    client,
    mix: MIX_PRESETS[mix] ?? mix,
    concurrency,
    accounts: accounts.length,
    requested: count,
    ops,
    opsByKind: opsDone,
    writes,
    errors: errors.length,
    firstErrors: errors.slice(0, 3),
    seconds: Number(seconds.toFixed(3)),
    opsPerSecond: Number((ops / seconds).toFixed(1)),
    writesPerSecond: Number((writes / seconds).toFixed(1)),
    latencyMs: Object.fromEntries(
      Object.entries(latencies)
        .filter(([, v]) => v.length)
        .map(([k, v]) => [k, { n: v.length, p50: percentile(v, 50), p95: percentile(v, 95), p99: percentile(v, 99) }]),
    ),
  }
}
