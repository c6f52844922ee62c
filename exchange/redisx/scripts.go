package redisx

import "github.com/redis/go-redis/v9"

// The Lua scripts: the registry's actions (register, status, terminate,
// attach, reopen, ...) are one script each, atomic and one round trip.
// Sends and receives, the hot paths, use plain commands (see send.go and
// mailbox.go): a script costs the server about ten microseconds more than
// the commands it runs. Every script takes ARGV[1] = "{prefix}" and
// ARGV[2] = the liveness grace in seconds (see prelude), then its own
// arguments.

// prelude is prepended to every script.
//
// alive(sid) is the liveness rule: a session is alive while its heartbeat
// key exists, or while the server has been up for less than the grace (a
// server that restarted from its append-only file dropped the heartbeats
// that expired while it was down; their sessions get two TTLs to beat
// again). INFO is read only when a heartbeat is missing.
const prelude = `
local P = ARGV[1]
local GRACE = tonumber(ARGV[2])
local uptime = nil
local function alive(sid)
  if not sid or sid == '' then return false end
  if redis.call('EXISTS', P .. ':s:' .. sid) == 1 then return true end
  if uptime == nil then
    local info = redis.call('INFO', 'server')
    uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or 0
  end
  return uptime < GRACE
end
local function rsid(token)
  return string.match(token, '^([^/]*)')
end
local function isreq(m)
  local k = string.byte(m, 2)
  return k == 1 or k == 3 or k == 5
end
-- restore puts the messages taken from q into f back at the head of q, in
-- order (f holds the newest at its left; q is taken from its right), and
-- leaves f empty (deleted).
local function restore(f, q)
  while true do
    local m = redis.call('LPOP', f)
    if not m then break end
    if m ~= '' then redis.call('RPUSH', q, m) end
  end
end
local function qkey(hex, role) return P .. ':q:' .. hex .. ':' .. role end
local function fkey(hex, token) return P .. ':f:' .. hex .. ':' .. token end
-- giveback returns what the receiver token took from the mailbox of hex
-- and did not acknowledge.
local function giveback(hex, role, token)
  if token and token ~= '' then restore(fkey(hex, token), qkey(hex, role)) end
end
`

func script(body string) *redis.Script { return redis.NewScript(prelude + body) }

// Result codes of the scripts.
const (
	codeMissing    = 0 // no record (or another role)
	codeActive     = 1
	codeTerminated = 2
	codeDeadOwner  = 3 // active, but its owning session is dead
	codeBusy       = 4 // a live receiver holds the mailbox
	codeReopened   = 5 // the mailbox was reopened
	codeDraining   = 7 // a live receiver still drains the terminated mailbox
)

// register creates an entity record unless the UUID exists.
// KEYS: e, agents, owned(sid). ARGV: P, grace, hex, role, name, beh, node,
// sid, cap, inc, st, rcv.
// Returns 1 when created, 0 when the UUID exists.
var registerScript = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'role', ARGV[4], 'name', ARGV[5], 'beh', ARGV[6], 'st', ARGV[11],
  'inc', ARGV[10], 'node', ARGV[7], 'own', ARGV[8], 'rcv', ARGV[12], 'cap', ARGV[9])
if ARGV[11] == '1' then
  if ARGV[4] == '1' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[6]) end
  redis.call('SADD', KEYS[3], ARGV[3])
end
return 1
`)

// unregister removes a record this session just created and still owns,
// active and without a receiver (a hybrid registration whose shared-memory
// half failed). KEYS: e, q, agents, owned(sid). ARGV: P, grace, hex, sid.
var unregisterScript = script(`
local r = redis.call('HMGET', KEYS[1], 'own', 'st', 'rcv')
if r[1] ~= ARGV[4] or r[2] ~= '1' or (r[3] and r[3] ~= '') then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('SREM', KEYS[4], ARGV[3])
return 1
`)

// status reads an entity's state. KEYS: e. ARGV: P, grace, role.
// Returns {code, inc}: codeMissing, codeActive, codeTerminated or
// codeDeadOwner.
var statusScript = script(`
local r = redis.call('HMGET', KEYS[1], 'role', 'st', 'inc', 'own')
if not r[1] or r[1] ~= ARGV[3] then return {0, 0} end
if r[2] == '1' and not alive(r[4]) then return {3, tonumber(r[3])} end
return {tonumber(r[2]), tonumber(r[3])}
`)

// info reads an entity's record. KEYS: e. ARGV: P, grace, role.
// Returns {code, inc, name, beh, node} (code as status).
var infoScript = script(`
local r = redis.call('HMGET', KEYS[1], 'role', 'st', 'inc', 'own', 'name', 'beh', 'node')
if not r[1] or r[1] ~= ARGV[3] then return {0} end
local code = tonumber(r[2])
if r[2] == '1' and not alive(r[4]) then code = 3 end
return {code, tonumber(r[3]), r[5], r[6], r[7]}
`)

// discover finds active agents by behavior. KEYS: agents. ARGV: P, grace,
// behavior, allowSubtypes ("1" or "0").
// Returns {found, dead}: hex UUIDs of the matching active agents whose
// owner lives, and of those whose owner is dead (to terminate).
var discoverScript = script(`
local found, dead = {}, {}
local all = redis.call('HGETALL', KEYS[1])
local name, sub = ARGV[3], ARGV[4] == '1'
for i = 1, #all, 2 do
  local ok, b = pcall(cmsgpack.unpack, all[i+1])
  local match = false
  if ok and type(b) == 'table' then
    match = b[1] == name
    if not match and sub then
      for j = 2, #b do if b[j] == name then match = true break end end
    end
  end
  if match then
    local r = redis.call('HMGET', P .. ':e:' .. all[i], 'st', 'own')
    if r[1] == '1' then
      if alive(r[2]) then found[#found+1] = all[i] else dead[#dead+1] = all[i] end
    end
  end
end
return {found, dead}
`)

// terminate ends a mailbox: it marks the record terminated, takes the
// queued requests out of the mailbox (returned, oldest first, for the
// caller to answer) and leaves the other messages; what a dead receiver had
// taken goes back to the mailbox first. A wake-up marker ends a blocked
// take. KEYS: e, agents. ARGV: P, grace, hex, onlyIfDead ("1": only when
// the owner is dead), role ("" for either).
// Returns {code, requests...}: 1 terminated now, 0 missing (or another
// role), 2 already terminated, 3 owner alive (onlyIfDead).
var terminateScript = script(`
local r = redis.call('HMGET', KEYS[1], 'st', 'own', 'rcv', 'role')
if not r[1] or (ARGV[5] ~= '' and r[4] ~= ARGV[5]) then return {0} end
if r[1] ~= '1' then return {2} end
if ARGV[4] == '1' and alive(r[2]) then return {3} end
redis.call('HSET', KEYS[1], 'st', '2')
redis.call('HDEL', KEYS[2], ARGV[3])
if r[2] and r[2] ~= '' then redis.call('SREM', P .. ':o:' .. r[2], ARGV[3]) end
local q = qkey(ARGV[3], r[4])
if not r[3] or r[3] == '' or not alive(rsid(r[3])) then
  giveback(ARGV[3], r[4], r[3])
  redis.call('HSET', KEYS[1], 'rcv', '')
end
local all = redis.call('LRANGE', q, 0, -1)
local keep, out = {}, {1}
for i = #all, 1, -1 do
  local m = all[i]
  if m ~= '' then
    if isreq(m) then out[#out+1] = m else keep[#keep+1] = m end
  end
end
redis.call('DEL', q)
for i = 1, #keep, 1000 do
  redis.call('LPUSH', q, unpack(keep, i, math.min(i + 999, #keep)))
end
redis.call('LPUSH', q, '')
return out
`)

// attach makes a Mailbox client the receiver of a mailbox, and its
// session the owner of an active one. What a dead receiver had taken goes
// back to the mailbox. KEYS: e, owned(sid). ARGV: P, grace, role, token,
// sid, hex.
// Returns {code, inc}: codeMissing, codeBusy, or the state
// (codeActive, codeTerminated) and the incarnation.
var attachScript = script(`
local r = redis.call('HMGET', KEYS[1], 'role', 'st', 'inc', 'rcv', 'own')
if not r[1] or r[1] ~= ARGV[3] then return {0, 0} end
if r[4] and r[4] ~= '' and r[4] ~= ARGV[4] then
  if alive(rsid(r[4])) then return {4, 0} end
  giveback(ARGV[6], r[1], r[4])
end
redis.call('HSET', KEYS[1], 'rcv', ARGV[4])
if r[2] == '1' and r[5] ~= ARGV[5] then
  redis.call('HSET', KEYS[1], 'own', ARGV[5])
  if r[5] and r[5] ~= '' then redis.call('SREM', P .. ':o:' .. r[5], ARGV[6]) end
  redis.call('SADD', KEYS[2], ARGV[6])
end
return {tonumber(r[2]), tonumber(r[3])}
`)

// recover finds out what a receiver holds after a take whose reply was
// lost: the elements it knew it held (ARGV, oldest first) are dropped from
// the right end of its taken list if the take's trim did not run; what is
// left was moved by the lost take. KEYS: f. ARGV: P, grace, n, v1..vn.
// Returns the list, newest first.
var recoverScript = script(`
local n = tonumber(ARGV[3])
for i = 1, n do
  if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[3 + i] then break end
  redis.call('RPOP', KEYS[1])
end
return redis.call('LRANGE', KEYS[1], 0, -1)
`)

// release detaches a Mailbox client: the elements of its taken list it
// returned (the oldest) are dropped, the rest go back to the head of the
// mailbox. When the client is no longer the receiver (it was seen dead, or
// the mailbox was reopened), everything goes back. Of a terminated
// mailbox, whose requests Terminate answered while this client held these,
// the requests do not go back: they are returned, {1, request...}, for the
// caller to answer. KEYS: e, q, f. ARGV: P, grace, token, returned.
var releaseScript = script(`
local r = redis.call('HMGET', KEYS[1], 'rcv', 'st')
local mine = r[1] == ARGV[3]
local k = tonumber(ARGV[4])
if mine and k > 0 then redis.call('LTRIM', KEYS[3], 0, -(k + 1)) end
local out = {1}
if r[2] and r[2] ~= '1' then
  while true do
    local m = redis.call('LPOP', KEYS[3])
    if not m then break end
    if m ~= '' then
      if isreq(m) then out[#out+1] = m else redis.call('RPUSH', KEYS[2], m) end
    end
  end
else
  restore(KEYS[3], KEYS[2])
end
if mine then redis.call('HSET', KEYS[1], 'rcv', '') end
return out
`)

// reopen brings a terminated mailbox back, empty, owned by the caller's
// session. KEYS: e, q, agents, owned(sid). ARGV: P, grace, role, sid, hex,
// inc ("" for the next one).
// Returns {code, inc}: codeMissing; codeActive (already active and ours:
// no-op); codeBusy (active under a live owner); codeDeadOwner (active
// under a dead one: terminate it first); codeDraining; or codeReopened
// with the new incarnation.
var reopenScript = script(`
local r = redis.call('HMGET', KEYS[1], 'role', 'st', 'inc', 'own', 'rcv', 'beh')
if not r[1] or r[1] ~= ARGV[3] then return {0, 0} end
if r[2] == '1' then
  if r[4] == ARGV[4] then return {1, tonumber(r[3])} end
  if alive(r[4]) then return {4, 0} end
  return {3, 0}
end
if r[5] and r[5] ~= '' then
  if alive(rsid(r[5])) then return {7, 0} end
  redis.call('DEL', fkey(ARGV[5], r[5]))
end
local inc = tonumber(r[3]) + 1
if ARGV[6] ~= '' then inc = tonumber(ARGV[6]) end
redis.call('HSET', KEYS[1], 'st', '1', 'inc', inc, 'own', ARGV[4], 'rcv', '')
redis.call('DEL', KEYS[2])
if r[1] == '1' then redis.call('HSET', KEYS[3], ARGV[5], r[6]) end
redis.call('SADD', KEYS[4], ARGV[5])
return {5, inc}
`)

// deadSessions lists the sessions of the index whose heartbeat is gone.
// KEYS: sessions. ARGV: P, grace.
var deadSessionsScript = script(`
local out = {}
for _, sid in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not alive(sid) then out[#out+1] = sid end
end
return out
`)

// forgetSession drops a dead session from the index once its entities are
// terminated. KEYS: sessions, owned(sid). ARGV: P, grace, sid.
var forgetSessionScript = script(`
if alive(ARGV[3]) then return 0 end
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[3])
return 1
`)
