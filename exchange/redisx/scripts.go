package redisx

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts: every action that reads and writes more than one key is
// one script, so it is atomic and costs one round trip. Every script takes
// ARGV[1] = "{prefix}" and ARGV[2] = the liveness grace in seconds (see
// prelude), then its own arguments.

// prelude is prepended to every script.
//
// alive(sid) is the liveness rule: a session is alive while its heartbeat
// key exists, or while the server has been up for less than the grace (a
// server that restarted from its append-only file dropped the heartbeats
// that expired while it was down; their sessions get one TTL to beat
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
-- order (f holds the newest at its left; q is taken from its right).
local function restore(f, q)
  while true do
    local m = redis.call('LPOP', f)
    if not m then break end
    if m ~= '' then redis.call('RPUSH', q, m) end
  end
end
`

// luaScript is a script with its source, so that the hot paths can build
// their commands with typed replies (no interface boxing of each element).
type luaScript struct {
	*redis.Script
	src string
}

func script(body string) *luaScript {
	src := prelude + body
	return &luaScript{redis.NewScript(src), src}
}

// cmdArgs returns the arguments of a command running l on keys and args:
// EVALSHA, or EVAL with the source when byBody (the server may have lost
// its script cache).
func (l *luaScript) cmdArgs(byBody bool, keys []string, args []any) []any {
	out := make([]any, 0, 3+len(keys)+len(args))
	if byBody {
		out = append(out, "eval", l.src)
	} else {
		out = append(out, "evalsha", l.Hash())
	}
	out = append(out, len(keys))
	for _, k := range keys {
		out = append(out, k)
	}
	return append(out, args...)
}

// runInts runs l and reads its reply as integers, loading the script when
// the server does not have it.
func (l *luaScript) runInts(ctx context.Context, c redis.UniversalClient, keys []string, args []any) ([]int64, error) {
	cmd := redis.NewIntSliceCmd(ctx, l.cmdArgs(false, keys, args)...)
	c.Process(ctx, cmd)
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd = redis.NewIntSliceCmd(ctx, l.cmdArgs(true, keys, args)...)
		c.Process(ctx, cmd)
	}
	return cmd.Result()
}

// Result codes of the scripts.
const (
	codeMissing    = 0 // no record (or another role)
	codeActive     = 1
	codeTerminated = 2
	codeDeadOwner  = 3 // active, but its owning session is dead
	codeBusy       = 4 // a live receiver holds the mailbox
	codeReopened   = 5 // the mailbox was reopened since this client attached
	codeDetached   = 6 // another receiver took the mailbox over
	codeDraining   = 7 // a live receiver still drains the terminated mailbox
)

// Send results (per message): the incarnation (>= 0), or one of these.
const (
	sendMissing = -1
	sendClosed  = -2
	sendFull    = -3
)

// register creates an entity record unless the UUID exists.
// KEYS: e, agents, owned(sid). ARGV: P, grace, hex, role, name, beh, node,
// sid, cap, inc, st, rcv.
// Returns 1 when created, 0 when the UUID exists.
var registerScript = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'role', ARGV[4], 'name', ARGV[5], 'beh', ARGV[6], 'st', ARGV[11],
  'inc', ARGV[10], 'node', ARGV[7], 'own', ARGV[8], 'rcv', ARGV[12], 'rseq', '', 'cap', ARGV[9])
if ARGV[11] == '1' then
  if ARGV[4] == '1' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[6]) end
  redis.call('SADD', KEYS[3], ARGV[3])
end
return 1
`)

// unregister removes a record this session just created and still owns,
// active and without a receiver (a hybrid registration whose shared-memory
// half failed). KEYS: e, q, f, agents, owned(sid). ARGV: P, grace, hex, sid.
var unregisterScript = script(`
local r = redis.call('HMGET', KEYS[1], 'own', 'st', 'rcv')
if r[1] ~= ARGV[4] or r[2] ~= '1' or (r[3] and r[3] ~= '') then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HDEL', KEYS[4], ARGV[3])
redis.call('SREM', KEYS[5], ARGV[3])
return 1
`)

// send delivers a batch of messages, each to its own mailbox: a record
// read and a push per mailbox (messages to the same mailbox, with the same
// role, share them; LPUSH's reply is the length checked against the
// capacity, and what went over it is popped back). The owner's heartbeat is
// not looked at here (a call per message): a mailbox whose owner died takes
// messages until its death is seen, and then answers its requests.
// KEYS: e1, q1, e2, q2, ... ARGV: P, grace, n, role1, msg1, role2, msg2, ...
// Returns one integer per message: the destination's incarnation, or a
// send code (sendMissing, sendClosed, sendFull).
var sendScript = script(`
local n = tonumber(ARGV[3])
if n == 1 then
  local r = redis.call('HMGET', KEYS[1], 'role', 'st', 'inc', 'cap')
  if not r[1] or r[1] ~= ARGV[4] then return {-1} end
  if r[2] ~= '1' then return {-2} end
  if redis.call('LPUSH', KEYS[2], ARGV[5]) > tonumber(r[4]) then
    redis.call('LPOP', KEYS[2])
    return {-3}
  end
  return {tonumber(r[3])}
end
local out, groups, order = {}, {}, {}
for i = 1, n do
  local gk = KEYS[2*i-1] .. '|' .. ARGV[2+2*i]
  local g = groups[gk]
  if not g then
    g = {e = KEYS[2*i-1], q = KEYS[2*i], role = ARGV[2+2*i], idx = {}, msgs = {}}
    groups[gk] = g
    order[#order+1] = gk
  end
  g.idx[#g.idx+1] = i
  g.msgs[#g.msgs+1] = ARGV[3+2*i]
end
for _, gk in ipairs(order) do
  local g = groups[gk]
  local r = redis.call('HMGET', g.e, 'role', 'st', 'inc', 'cap')
  local code = nil
  if not r[1] or r[1] ~= g.role then code = -1
  elseif r[2] ~= '1' then code = -2 end
  if code then
    for _, i in ipairs(g.idx) do out[i] = code end
  else
    local over = redis.call('LPUSH', g.q, unpack(g.msgs)) - tonumber(r[4])
    local k = #g.msgs
    if over > 0 then
      local back = math.min(over, k)
      redis.call('LPOP', g.q, back)
      k = k - back
    end
    local inc = tonumber(r[3])
    for j, i in ipairs(g.idx) do
      if j <= k then out[i] = inc else out[i] = -3 end
    end
  end
end
return out
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
// take. KEYS: e, q, f, agents. ARGV: P, grace, hex, onlyIfDead ("1": only
// when the owner is dead), role ("" for either).
// Returns {code, requests...}: 1 terminated now, 0 missing (or another
// role), 2 already terminated, 3 owner alive (onlyIfDead).
var terminateScript = script(`
local r = redis.call('HMGET', KEYS[1], 'st', 'own', 'rcv', 'role')
if not r[1] or (ARGV[5] ~= '' and r[4] ~= ARGV[5]) then return {0} end
if r[1] ~= '1' then return {2} end
if ARGV[4] == '1' and alive(r[2]) then return {3} end
redis.call('HSET', KEYS[1], 'st', '2')
redis.call('HDEL', KEYS[4], ARGV[3])
if r[2] and r[2] ~= '' then redis.call('SREM', P .. ':o:' .. r[2], ARGV[3]) end
if not r[3] or r[3] == '' or not alive(rsid(r[3])) then
  restore(KEYS[3], KEYS[2])
  redis.call('HSET', KEYS[1], 'rcv', '', 'rseq', '')
end
local all = redis.call('LRANGE', KEYS[2], 0, -1)
local keep, out = {}, {1}
for i = #all, 1, -1 do
  local m = all[i]
  if m ~= '' then
    if isreq(m) then out[#out+1] = m else keep[#keep+1] = m end
  end
end
redis.call('DEL', KEYS[2])
for i = 1, #keep, 1000 do
  redis.call('LPUSH', KEYS[2], unpack(keep, i, math.min(i + 999, #keep)))
end
redis.call('LPUSH', KEYS[2], '')
return out
`)

// attach makes a Mailbox client the receiver of a mailbox, and its
// session the owner of an active one. What a dead receiver had taken goes
// back to the mailbox. KEYS: e, q, f, owned(sid). ARGV: P, grace, role,
// token, sid, hex.
// Returns {code, inc}: codeMissing, codeBusy, or the state
// (codeActive, codeTerminated) and the incarnation.
var attachScript = script(`
local r = redis.call('HMGET', KEYS[1], 'role', 'st', 'inc', 'rcv', 'own')
if not r[1] or r[1] ~= ARGV[3] then return {0, 0} end
if r[4] and r[4] ~= '' and r[4] ~= ARGV[4] then
  if alive(rsid(r[4])) then return {4, 0} end
end
if r[4] ~= ARGV[4] then restore(KEYS[3], KEYS[2]) end
redis.call('HSET', KEYS[1], 'rcv', ARGV[4], 'rseq', '')
if r[2] == '1' and r[5] ~= ARGV[5] then
  redis.call('HSET', KEYS[1], 'own', ARGV[5])
  if r[5] and r[5] ~= '' then redis.call('SREM', P .. ':o:' .. r[5], ARGV[6]) end
  redis.call('SADD', KEYS[4], ARGV[6])
end
return {tonumber(r[2]), tonumber(r[3])}
`)

// fetch acknowledges what the receiver took last and takes the next batch.
// The receiver sends it right after a blocking move (BLMOVE q f) in the
// same round trip, so that it runs when that move returns (a message came,
// a marker woke it, or it timed out) and both replies travel together.
// KEYS: e, q, f. ARGV: P, grace, token, inc, seq, known, max.
// known is how many elements of f the receiver took and returned (the
// oldest, at the right end): they are dropped. Everything else in f (what
// the move took, what moves whose replies were lost took) is returned,
// with up to max more taken from q; markers are dropped. A retry of a
// fetch whose reply was lost (same seq) drops nothing and returns f again.
// Returns {code, msgs...} oldest first, code the state, or codeMissing,
// codeReopened, codeDetached (no msgs).
var fetchScript = script(`
local r = redis.call('HMGET', KEYS[1], 'st', 'inc', 'rcv', 'rseq')
if not r[1] then return {'0'} end
if r[2] ~= ARGV[4] then return {'5'} end
if r[3] ~= ARGV[3] then return {'6'} end
local out = {r[1]}
local function collect(list, from, to, step)
  local marker = false
  for i = from, to, step do
    if list[i] == '' then marker = true else out[#out+1] = list[i] end
  end
  return marker
end
if r[4] == ARGV[5] then
  local f = redis.call('LRANGE', KEYS[3], 0, -1)
  if collect(f, #f, 1, -1) then redis.call('LREM', KEYS[3], 0, '') end
  return out
end
local known = tonumber(ARGV[6])
if known > 0 then redis.call('LTRIM', KEYS[3], 0, -(known + 1)) end
local left = redis.call('LRANGE', KEYS[3], 0, -1)
if collect(left, #left, 1, -1) then redis.call('LREM', KEYS[3], 0, '') end
local got = redis.call('RPOP', KEYS[2], tonumber(ARGV[7]))
if got then
  local n = #out
  collect(got, 1, #got, 1)
  if #out > n then redis.call('LPUSH', KEYS[3], unpack(out, n + 1, #out)) end
end
redis.call('HSET', KEYS[1], 'rseq', ARGV[5])
return out
`)

// release detaches a Mailbox client: the known elements of f it returned
// are dropped, the rest go back to the head of the mailbox.
// KEYS: e, q, f. ARGV: P, grace, token, returned.
var releaseScript = script(`
if redis.call('HGET', KEYS[1], 'rcv') ~= ARGV[3] then return 0 end
local k = tonumber(ARGV[4])
if k > 0 then redis.call('LTRIM', KEYS[3], 0, -(k + 1)) end
restore(KEYS[3], KEYS[2])
redis.call('HSET', KEYS[1], 'rcv', '', 'rseq', '')
return 1
`)

// reopen brings a terminated mailbox back, empty, owned by the caller's
// session. KEYS: e, q, f, agents, owned(sid). ARGV: P, grace, role, sid,
// hex, inc ("" for the next one).
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
if r[5] and r[5] ~= '' and alive(rsid(r[5])) then return {7, 0} end
local inc = tonumber(r[3]) + 1
if ARGV[6] ~= '' then inc = tonumber(ARGV[6]) end
redis.call('HSET', KEYS[1], 'st', '1', 'inc', inc, 'own', ARGV[4], 'rcv', '', 'rseq', '')
redis.call('DEL', KEYS[2], KEYS[3])
if r[1] == '1' then redis.call('HSET', KEYS[4], ARGV[5], r[6]) end
redis.call('SADD', KEYS[5], ARGV[5])
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
