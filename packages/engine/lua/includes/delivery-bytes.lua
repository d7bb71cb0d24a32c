-- The byte bound of a lease (lease-ready.lua) and of an enqueue's handoff
-- (enqueue-batch.lua): what a delivery takes, and whether the next one fits.

-- recordBytes(record): what a task's record (JSON, or false when it has none) adds to
-- a delivery's size as the engine counts it (`deliveryBytes`), at least: its length,
-- and two bytes more per header (a header's wire framing is two bytes longer than its
-- JSON `"name":"value",`; every header has one `":"`, so counting them all over-counts
-- at worst).
local function recordBytes(record)
  if not record then return 0 end
  local _, pairsIn = string.gsub(record, '":"', '')
  return #record + 2 * pairsIn
end

-- deliveryBound(args): the byte bound of a lease whose arguments are laid out as
-- lease-17.lua's ARGV (args[8] most bytes, '' for none; args[9] '1': the first delivery
-- is kept whatever its size; args[10] the bytes a delivery takes besides its payload,
-- record and error text), with the bytes taken so far; nil when it has none.
local function deliveryBound(args)
  local max = tonumber(args[8])
  if not max then return nil end
  return { max = max, firstAlways = args[9] == '1', fixed = tonumber(args[10]) or 0, bytes = 0 }
end

-- takeWithin(bound, size, taken): whether one more delivery, `size` bytes besides the
-- fixed part, fits what `bound` has left after `taken` deliveries (the first one always
-- does with firstAlways); counted in bound.bytes when it does.
local function takeWithin(bound, size, taken)
  size = size + bound.fixed
  if bound.bytes + size > bound.max and not (bound.firstAlways and taken == 0) then return false end
  bound.bytes = bound.bytes + size
  return true
end
