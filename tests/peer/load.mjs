#!/usr/bin/env node
// Writes dev.guildhall.* records (service / endorsement / operator) to the
// accounts of a running peer and prints throughput as JSON on stdout.
//
//   node load.mjs --peer FILE [--count 1000] [--concurrency 8]
//                 [--mix mixed|create|create=60,put=15,delete=10,apply=15]
//                 [--client fetch|api] [--accounts all|0,2] [--seed 1]
//
// --count is the number of operations; an applyWrites operation holds up
// to 4 writes, so "writes" in the summary can exceed it. Operations go
// round robin over the chosen accounts. Exit status 1 if any failed.
import { readPeerInfo, requireNode22 } from './lib/common.mjs'

requireNode22('load.mjs')
await import('./lib/loopback-guard.mjs')
const { parseArgs } = await import('node:util')
const { runLoad } = await import('./lib/load.mjs')

const { values: opt } = parseArgs({
  options: {
    peer: { type: 'string', default: './data/peer.json' },
    count: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '8' },
    mix: { type: 'string', default: 'mixed' },
    client: { type: 'string', default: 'fetch' },
    accounts: { type: 'string', default: 'all' },
    seed: { type: 'string', default: '1' },
  },
})
const peer = readPeerInfo(opt.peer)
const accounts = opt.accounts === 'all' ? peer.accounts : opt.accounts.split(',').map((i) => peer.accounts[Number(i)])
if (accounts.some((a) => !a)) {
  process.stderr.write(`load.mjs: --accounts ${opt.accounts} names an account the peer does not have\n`)
  process.exit(2)
}
const summary = await runLoad({
  accounts,
  count: Number(opt.count),
  concurrency: Number(opt.concurrency),
  mix: opt.mix,
  client: opt.client,
  seed: Number(opt.seed),
})
process.stdout.write(JSON.stringify(summary, null, 2) + '\n')
process.exit(summary.errors ? 1 : 0)
