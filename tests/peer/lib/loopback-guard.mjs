// Loopback guard for the Guildhall test peer. Import it before any other
// module so its patches are in place when the PDS / PLC / clients load.
//
// Why: the reference PDS knows how to reach the public network (relays,
// app view, DNS handle resolution, did:web over https). Tests must never
// leak there, and CI has no internet anyway: a silent attempt would show up
// as a slow timeout instead of a clear error. So:
//   * outgoing TCP connections to a non-loopback host fail at once with
//     code EPEERBLOCKED (and are logged on stderr);
//   * DNS look-ups of non-loopback names and all DNS record queries
//     (resolveTxt is what handle resolution uses) fail with ENOTFOUND;
//   * servers that call listen(port) with no host (express does, in both
//     the PDS and the PLC) bind to 127.0.0.1 instead of all interfaces.
//
// GUILDHALL_PEER_GUARD=off disables the first two (never needed in tests).
// GUILDHALL_PEER_BIND sets the bind address (default 127.0.0.1).
import dns from 'node:dns'
import dnsPromises from 'node:dns/promises'
import net from 'node:net'
import { syncBuiltinESMExports } from 'node:module'

/** Every blocked attempt, for a summary at shutdown. */
export const blocked = []

const bindHost = process.env.GUILDHALL_PEER_BIND || '127.0.0.1'

/** True for names/addresses that can only mean this machine. */
export function isLoopback(host) {
  // Node treats a missing host as localhost.
  if (host === undefined || host === null || host === '') return true
  let h = String(host).toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h.startsWith('::ffff:')) h = h.slice('::ffff:'.length)
  return (
    h === 'localhost' ||
    h.endsWith('.localhost') ||
    h === '::1' ||
    h === '0:0:0:0:0:0:0:1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
  )
}

function note(kind, target) {
  blocked.push({ kind, target, at: new Date().toISOString() })
  process.stderr.write(`[loopback-guard] blocked ${kind} ${target}\n`)
}

function dnsBlocked(name) {
  return Object.assign(new Error(`loopback-guard: DNS for ${name} is blocked`), {
    code: 'ENOTFOUND',
    hostname: name,
  })
}

if (process.env.GUILDHALL_PEER_GUARD !== 'off') {
  // --- outgoing sockets: every client (http, undici/fetch, ws) ends here ---
  const connect = net.Socket.prototype.connect
  net.Socket.prototype.connect = function guardedConnect(...args) {
    // connect() is called either with an options object (possibly wrapped
    // in an array by node's internal normalisation), or (port, host), or
    // (path) for a unix socket, which is always local.
    const first = Array.isArray(args[0]) ? args[0][0] : args[0]
    let host
    let port
    let isPath = false
    if (first && typeof first === 'object') {
      host = first.host ?? first.hostname
      port = first.port
      isPath = first.path !== undefined && first.path !== null
    } else if (typeof first === 'number' || /^\d+$/.test(String(first))) {
      port = first
      host = typeof args[1] === 'string' ? args[1] : undefined
    } else if (typeof first === 'string') {
      isPath = true
    }
    if (!isPath && !isLoopback(host)) {
      note('connect', `${host}:${port}`)
      const err = Object.assign(new Error(`loopback-guard: connection to ${host}:${port} is blocked`), {
        code: 'EPEERBLOCKED',
      })
      process.nextTick(() => this.destroy(err))
      return this
    }
    return connect.apply(this, args)
  }

  // --- name look-ups ---
  const lookup = dns.lookup
  dns.lookup = function guardedLookup(hostname, options, callback) {
    const cb = typeof options === 'function' ? options : callback
    if (net.isIP(hostname) === 0 && !isLoopback(hostname)) {
      note('dns.lookup', hostname)
      process.nextTick(() => cb(dnsBlocked(hostname)))
      return {}
    }
    return lookup.apply(this, arguments)
  }
  const lookupP = dnsPromises.lookup
  dnsPromises.lookup = async function guardedLookupP(hostname, ...rest) {
    if (net.isIP(hostname) === 0 && !isLoopback(hostname)) {
      note('dns.lookup', hostname)
      throw dnsBlocked(hostname)
    }
    return lookupP.call(this, hostname, ...rest)
  }

  // --- DNS record queries: never needed on loopback, so refuse them all ---
  const queries = [
    'resolve', 'resolve4', 'resolve6', 'resolveAny', 'resolveCaa', 'resolveCname',
    'resolveMx', 'resolveNaptr', 'resolveNs', 'resolvePtr', 'resolveSoa',
    'resolveSrv', 'resolveTxt', 'reverse',
  ]
  const callbackStyle = (label) =>
    function refused(name, ...rest) {
      note(label, name)
      const cb = rest.find((x) => typeof x === 'function')
      if (cb) process.nextTick(() => cb(dnsBlocked(name)))
    }
  const promiseStyle = (label) =>
    async function refused(name) {
      note(label, name)
      throw dnsBlocked(name)
    }
  for (const m of queries) {
    if (typeof dns[m] === 'function') dns[m] = callbackStyle(`dns.${m}`)
    if (typeof dnsPromises[m] === 'function') dnsPromises[m] = promiseStyle(`dns.${m}`)
    if (dns.Resolver && typeof dns.Resolver.prototype[m] === 'function') {
      dns.Resolver.prototype[m] = callbackStyle(`Resolver.${m}`)
    }
    if (dnsPromises.Resolver && typeof dnsPromises.Resolver.prototype[m] === 'function') {
      dnsPromises.Resolver.prototype[m] = promiseStyle(`Resolver.${m}`)
    }
  }
}

// --- servers: bind to loopback when no host is given ---
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function guardedListen(...args) {
  const first = args[0]
  const portOnly = typeof first === 'number' || /^\d+$/.test(String(first))
  if (portOnly && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, bindHost)
  } else if (first && typeof first === 'object' && first.port !== undefined && first.host === undefined && first.path === undefined) {
    args[0] = { ...first, host: bindHost }
  }
  return listen.apply(this, args)
}

// Make `import { lookup } from 'node:dns'` in modules loaded later see the
// patched functions too.
syncBuiltinESMExports()
